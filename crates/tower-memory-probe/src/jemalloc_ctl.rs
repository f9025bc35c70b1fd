//! jemalloc's controls (`mallctl`) as safe, typed functions, one per control (feature `jemalloc`).
//!
//! Each function names one control and carries its documented C type, so no caller can read a
//! control with the wrong type. They reach whatever jemalloc is linked: the results mean something
//! only when it is the global allocator (see [`self_check`](crate::self_check)).
//!
//! Decay times are in milliseconds; `-1` means "never decay", `0` "return at once".

use std::ffi::CStr;

use tikv_jemalloc_ctl::raw;

use crate::ProbeError;

fn failed(name: &CStr, e: tikv_jemalloc_ctl::Error) -> ProbeError {
    ProbeError::Allocator(format!("{}: {e}", name.to_string_lossy()))
}

/// Reads the control `name`, whose C type is `T`.
///
/// # Safety
///
/// `T` must be the control's documented type.
unsafe fn read<T: Copy>(name: &CStr) -> Result<T, ProbeError> {
    // SAFETY: the caller guarantees the type; the name is NUL-terminated by construction.
    unsafe { raw::read::<T>(name.to_bytes_with_nul()) }.map_err(|e| failed(name, e))
}

/// Writes the control `name`, whose C type is `T`.
///
/// # Safety
///
/// `T` must be the control's documented type, and the control writable.
unsafe fn write<T>(name: &CStr, value: T) -> Result<(), ProbeError> {
    // SAFETY: as for `read`.
    unsafe { raw::write::<T>(name.to_bytes_with_nul(), value) }.map_err(|e| failed(name, e))
}

/// `arena.<i>.<control>` as a C string (`i` is a number, so no NUL can sneak in).
fn arena_ctl(i: u32, control: &str) -> std::ffi::CString {
    std::ffi::CString::new(format!("arena.{i}.{control}")).expect("no NUL in an arena control")
}

/// `opt.background_thread`: whether jemalloc's background purging threads were on at start-up.
pub fn opt_background_thread() -> Result<bool, ProbeError> {
    // SAFETY: documented as `bool`.
    unsafe { read(c"opt.background_thread") }
}

/// `opt.dirty_decay_ms`: the dirty-page decay time the process started with.
pub fn opt_dirty_decay_ms() -> Result<isize, ProbeError> {
    // SAFETY: documented as `ssize_t`.
    unsafe { read(c"opt.dirty_decay_ms") }
}

/// `opt.muzzy_decay_ms`: the muzzy-page decay time the process started with.
pub fn opt_muzzy_decay_ms() -> Result<isize, ProbeError> {
    // SAFETY: documented as `ssize_t`.
    unsafe { read(c"opt.muzzy_decay_ms") }
}

/// `background_thread`: whether jemalloc's background purging threads run now.
pub fn background_thread() -> Result<bool, ProbeError> {
    // SAFETY: documented as `bool`.
    unsafe { read(c"background_thread") }
}

/// Sets `background_thread`: starts or stops jemalloc's background purging threads.
pub fn set_background_thread(on: bool) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `bool`.
    unsafe { write(c"background_thread", on) }
}

/// `arenas.dirty_decay_ms`: the dirty-page decay time arenas created from now on get.
pub fn default_dirty_decay_ms() -> Result<isize, ProbeError> {
    // SAFETY: documented as `ssize_t`.
    unsafe { read(c"arenas.dirty_decay_ms") }
}

/// Sets `arenas.dirty_decay_ms` for arenas created from now on.
pub fn set_default_dirty_decay_ms(ms: isize) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `ssize_t`.
    unsafe { write(c"arenas.dirty_decay_ms", ms) }
}

/// `arenas.muzzy_decay_ms`: the muzzy-page decay time arenas created from now on get.
pub fn default_muzzy_decay_ms() -> Result<isize, ProbeError> {
    // SAFETY: documented as `ssize_t`.
    unsafe { read(c"arenas.muzzy_decay_ms") }
}

/// Sets `arenas.muzzy_decay_ms` for arenas created from now on.
pub fn set_default_muzzy_decay_ms(ms: isize) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `ssize_t`.
    unsafe { write(c"arenas.muzzy_decay_ms", ms) }
}

/// `arenas.narenas`: the number of arena indexes (some may not be initialized yet).
pub fn arena_count() -> Result<u32, ProbeError> {
    // SAFETY: documented as `unsigned`.
    unsafe { read(c"arenas.narenas") }
}

/// `arenas.create`: creates an arena and returns its index.
pub fn create_arena() -> Result<u32, ProbeError> {
    // SAFETY: documented as a readable `unsigned` (the new index).
    unsafe { read(c"arenas.create") }
}

/// `arena.<i>.initialized`: whether arena `i` exists (arenas are created lazily).
pub fn arena_initialized(i: u32) -> Result<bool, ProbeError> {
    // SAFETY: documented as `bool`.
    unsafe { read(&arena_ctl(i, "initialized")) }
}

/// `arena.<i>.dirty_decay_ms`: arena `i`'s dirty-page decay time.
pub fn arena_dirty_decay_ms(i: u32) -> Result<isize, ProbeError> {
    // SAFETY: documented as `ssize_t`.
    unsafe { read(&arena_ctl(i, "dirty_decay_ms")) }
}

/// Sets `arena.<i>.dirty_decay_ms`.
pub fn set_arena_dirty_decay_ms(i: u32, ms: isize) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `ssize_t`.
    unsafe { write(&arena_ctl(i, "dirty_decay_ms"), ms) }
}

/// `arena.<i>.muzzy_decay_ms`: arena `i`'s muzzy-page decay time.
pub fn arena_muzzy_decay_ms(i: u32) -> Result<isize, ProbeError> {
    // SAFETY: documented as `ssize_t`.
    unsafe { read(&arena_ctl(i, "muzzy_decay_ms")) }
}

/// Sets `arena.<i>.muzzy_decay_ms`.
pub fn set_arena_muzzy_decay_ms(i: u32, ms: isize) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `ssize_t`.
    unsafe { write(&arena_ctl(i, "muzzy_decay_ms"), ms) }
}

/// `opt.prof`: whether the process started with heap profiling (fails on a jemalloc built
/// without profiling).
pub fn opt_prof() -> Result<bool, ProbeError> {
    // SAFETY: documented as `bool`.
    unsafe { read(c"opt.prof") }
}

/// `prof.active`: whether the heap profiler samples now.
pub fn prof_active() -> Result<bool, ProbeError> {
    // SAFETY: documented as `bool`.
    unsafe { read(c"prof.active") }
}

/// Sets `prof.active`: pauses or resumes the heap profiler's sampling.
pub fn set_prof_active(active: bool) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `bool`.
    unsafe { write(c"prof.active", active) }
}

/// `prof.dump`: has jemalloc write its heap profile to the file `path`.
pub(crate) fn prof_dump(path: &CStr) -> Result<(), ProbeError> {
    // SAFETY: documented as a writable `const char *`; the string lives until the call returns
    // and jemalloc does not keep the pointer.
    unsafe { write(c"prof.dump", path.as_ptr()) }
}
