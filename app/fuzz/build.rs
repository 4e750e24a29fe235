// Bake libtorch's directory into the run path of every binary of this crate
// (test binaries included), so they find libtorch without LD_LIBRARY_PATH.
// torch-sys exports the directory it linked against as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
