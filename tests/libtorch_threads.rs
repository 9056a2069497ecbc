//! Threads that run networks for a request use the process's libtorch
//! thread count from their first convolution on.
//!
//! libtorch applies `tch::set_num_threads` to a new thread only once that
//! thread reaches one of its own parallel loops; until then its OpenMP
//! regions (oneDNN's convolutions) are as wide as the machine. The threads
//! a request spawns, and the server's blocking threads, must not wait for
//! that. Checked through OpenMP's own count, as those kernels read it; a
//! process of its own, since the count is global.

use std::ffi::c_int;

use emotion_ai::predict::{spawn_like_caller, use_process_libtorch_threads};

/// `omp_get_max_threads()` of the calling thread, from the OpenMP runtime
/// libtorch loaded.
fn openmp_threads() -> c_int {
    // SAFETY: a C string naming a symbol; dlsym only looks it up.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"omp_get_max_threads".as_ptr()) };
    assert!(!symbol.is_null(), "libtorch's OpenMP runtime is not loaded");
    // SAFETY: omp_get_max_threads takes nothing and returns an int.
    let omp_get_max_threads: extern "C" fn() -> c_int = unsafe { std::mem::transmute(symbol) };
    omp_get_max_threads()
}

#[test]
fn request_threads_run_libtorch_on_the_processs_thread_count() {
    // What `serve` and `predict` do at start.
    tch::set_num_threads(1);
    assert_eq!(openmp_threads(), 1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as c_int;
    let (plain, spawned, blocking) = std::thread::scope(|scope| {
        // A thread left alone: OpenMP's default, every core unless
        // OMP_NUM_THREADS says otherwise.
        let plain = scope.spawn(openmp_threads).join().expect("plain thread");
        let spawned = spawn_like_caller(scope, openmp_threads).join().expect("spawned thread");
        let blocking = scope
            .spawn(|| {
                use_process_libtorch_threads();
                openmp_threads()
            })
            .join()
            .expect("blocking thread");
        (plain, spawned, blocking)
    });
    assert_eq!((spawned, blocking), (1, 1));
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        assert_eq!(plain, cores, "a new thread starts at OpenMP's default: what the helpers are for");
    }
}
