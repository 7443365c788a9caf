/* minikv's one C function, compiled with -fomit-frame-pointer (see build.zig).
 *
 * It calls a Zig callback with the frame-pointer register holding a value that
 * is not a frame of this stack, as C code built without frame pointers may
 * leave it (it is an ordinary register there). A profiler that walks frame
 * pointers from inside the callback reaches that value next; it must end its
 * walk there rather than read through it. zprof's tests use it through
 * `DEBUG FOREIGN-FRAME` (src/debug.zig).
 */

void minikv_call_with_foreign_frame(void (*callback)(void *), void *context, __UINTPTR_TYPE__ frame) {
#if defined(__x86_64__)
    /* Declared clobbered: the compiler saves the caller's rbp and restores it on return. */
    __asm__ volatile("mov %0, %%rbp" : : "r"(frame) : "rbp");
#elif defined(__aarch64__)
    __asm__ volatile("mov x29, %0" : : "r"(frame) : "x29");
#else
    (void)frame;
#endif
    callback(context);
    /* Keeps the call a call, not a jump after the epilogue restored the register. */
    __asm__ volatile("" : : : "memory");
}
