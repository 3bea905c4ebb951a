//! Browser MQTT client in WebAssembly: a thin driver of the `switchboard-mqtt` client state
//! machine over a `web-sys` WebSocket (issue: the browser client). This crate is laid out in the
//! workspace so the build, lints and wasm32 checks cover it from the start.
