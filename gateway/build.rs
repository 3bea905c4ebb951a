//! With the `embed-www` feature, checks that the dashboard is built before it is embedded, and
//! rebuilds the gateway when it changes.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_EMBED_WWW").is_none() {
        return;
    }
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    println!("cargo::rerun-if-changed={}", dist.display());
    if !dist.join("index.html").is_file() {
        panic!(
            "the `embed-www` feature embeds the built dashboard, but {} has no index.html: \
             run `trunk build --release` (or `cargo xtask demo`) first",
            dist.display()
        );
    }
}
