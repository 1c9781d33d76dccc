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
