pub const defects: []const []const u8 = &.{};
