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

/// mimalloc's `abandoned_page_purge` (its option 12 in v2): a thread that exits returns
/// the free pages of its heap at once, so a thread per call leaves no memory behind.
const MI_OPTION_ABANDONED_PAGE_PURGE: libmimalloc_sys::mi_option_t = 12;

/// Sets the allocator's options; called first when the extension is loaded.
pub fn configure_allocator() {
    // SAFETY: mi_option_set_enabled only stores an option's value.
    unsafe { libmimalloc_sys::mi_option_set_enabled(MI_OPTION_ABANDONED_PAGE_PURGE, true) };
}
