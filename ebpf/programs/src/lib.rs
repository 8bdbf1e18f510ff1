//! Empty on purpose: the programs are the `strait` binary (src/main.rs), built for
//! bpfel-unknown-none by `node-agent/build.rs`. This library target exists so the agent can
//! name this crate as a build dependency, which makes cargo rebuild the object when this crate
//! or `strait-ebpf-common` changes.
#![no_std]
