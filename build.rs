//! Bakes libtorch's library directory into the RPATH of every binary and test
//! executable, so they run without LD_LIBRARY_PATH. torch-sys exports the
//! directory as `DEP_TCH_LIBTORCH_LIB` because it declares `links = "tch"`.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
