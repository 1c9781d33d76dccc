-- ff_version (spec 02 §3.25): a bare bulk string, not an envelope.
redis.register_function("ff_version", function(keys, args)
  return LIBRARY_VERSION
end)
