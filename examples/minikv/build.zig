const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});

    // Shapes of other servers, for zprof's tests of servers unlike minikv.
    const shape = b.addOptions();
    shape.addOption(u16, "fixed_port", b.option(u16, "fixed-port", "Listen on this port, whatever --port says") orelse 0);
    shape.addOption([]const u8, "port_env", b.option([]const u8, "port-env", "Take the port from this environment variable, whatever --port says") orelse "");
    shape.addOption(bool, "basic_commands", b.option(bool, "basic-commands", "Answer only PING, SET, GET and DEL (and SHUTDOWN); every other command is unknown") orelse false);
    shape.addOption(bool, "fat_value", b.option(bool, "fat-value", "Give the keyspace's Value an inline 4 KiB variant no command uses, so every table entry is larger than 4 KiB") orelse false);

    const root_module = b.createModule(.{
        .root_source_file = b.path("src/main.zig"),
        .target = target,
        .optimize = optimize,
        // minikv is a profiling target: keep DWARF and frame pointers in every
        // mode so stacks unwind and symbolize even in ReleaseFast.
        .strip = false,
        .omit_frame_pointer = false,
    });
    root_module.addOptions("shape", shape);
    // DEBUG FOREIGN-FRAME's C function is built without frame pointers on
    // purpose: a stack walk through it must stop, not fault (src/debug.zig).
    root_module.addCSourceFile(.{ .file = b.path("src/foreign_frame.c"), .flags = &.{ "-O2", "-fomit-frame-pointer" } });

    const exe = b.addExecutable(.{
        .name = "minikv",
        .root_module = root_module,
    });
    b.installArtifact(exe);

    const run_cmd = b.addRunArtifact(exe);
    run_cmd.step.dependOn(b.getInstallStep());
    if (b.args) |args| run_cmd.addArgs(args);
    const run_step = b.step("run", "Run the minikv server");
    run_step.dependOn(&run_cmd.step);

    const unit_tests = b.addTest(.{ .root_module = root_module });
    const run_unit_tests = b.addRunArtifact(unit_tests);
    const test_step = b.step("test", "Run the unit tests");
    test_step.dependOn(&run_unit_tests.step);
}
