redis.register_function("ffw_version", function(keys, args)
  return FFW_VERSION
end)
