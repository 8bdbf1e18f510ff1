//! `strait-cni`: the CNI entry point. Reads the environment and stdin, prints the result or
//! the error JSON, and exits non-zero on error, as the CNI spec asks.

use std::io::Read as _;

fn main() {
    let command = std::env::var("CNI_COMMAND").ok();
    if command.is_none() && std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "strait-cni: Strait's CNI 1.0 plugin.\n\n\
             Run by a container runtime with CNI_COMMAND=ADD|DEL|CHECK|VERSION, CNI_CONTAINERID,\n\
             CNI_NETNS, CNI_IFNAME, CNI_ARGS and the network configuration on stdin.\n\
             Supported versions: {}",
            strait_cni::SUPPORTED_VERSIONS.join(", ")
        );
        return;
    }
    let mut stdin = String::new();
    if command.as_deref() != Some("VERSION") {
        // A failed read leaves stdin empty, which the decoder reports as code 6.
        let _ignored = std::io::stdin().read_to_string(&mut stdin);
    }
    match strait_cni::run(&|name| std::env::var(name).ok(), &stdin) {
        Ok(result) if result.is_empty() => {}
        Ok(result) => println!("{result}"),
        Err(error) => {
            println!(
                "{}",
                serde_json::to_string(&error).unwrap_or_else(|_| error.msg.clone())
            );
            std::process::exit(1);
        }
    }
}
