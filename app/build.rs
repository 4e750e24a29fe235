// Bake libtorch's directory into the binary's run path, so `emorl` finds the
// libraries without LD_LIBRARY_PATH. torch-sys exports the path it linked against.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
