"""Pure wire contract: partitions, ids, keys, function argument/result structs,
error codes. No I/O happens in this package."""
