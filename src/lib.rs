//! The Rust core of feast-redis-rs. Layers, from the bottom: `encoding` (Feast's Redis
//! format), `redis` (connection settings and the client), `store` (Feast's online-store
//! operations as Redis commands), `server` (Feast's HTTP feature server contract) and,
//! with the `python` feature, `python` (the `_native` extension module).

pub mod columns;
pub mod encoding;
pub mod redis;
pub mod server;
pub mod store;

#[cfg(feature = "python")]
mod python;

/// mimalloc: with glibc's malloc, `malloc`/`free` and their arena locks were a fifth of
/// the server's CPU on a 1-row read.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v2's options by their number in its `mimalloc.h` (libmimalloc-sys does not
/// name these): `abandoned_page_purge`, so that a thread that exits returns its heap's
/// free pages at once, and `purge_delay`, so that freed memory goes back to the system
/// when it is freed, not 10 ms later at the allocator's next call on that thread (which
/// may never come: a thread per call, a worker going idle).
const MI_OPTION_ABANDONED_PAGE_PURGE: libmimalloc_sys::mi_option_t = 12;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocator's options; called first when the extension is loaded.
pub fn configure_allocator() {
    // SAFETY: setting an option only stores its value.
    unsafe {
        libmimalloc_sys::mi_option_set_enabled(MI_OPTION_ABANDONED_PAGE_PURGE, true);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}
