//! The dashboard binary trunk builds (`data-bin="switchboard-www"`): mounts the app.

fn main() {
    #[cfg(target_arch = "wasm32")]
    switchboard_www::start();
}
