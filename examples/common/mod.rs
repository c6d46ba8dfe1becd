//! Command-line helpers the application examples share: `--name value` flags and `--device`.

use kiln::prelude::*;

/// The value after `name`, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The number after `name`, or `default` when the flag is absent; a value that does not parse is an
/// error naming the flag.
pub fn number<T: std::str::FromStr>(name: &str, default: T) -> kiln::Result<T> {
    let value = arg(name, "");
    if value.is_empty() {
        return Ok(default);
    }
    value.parse().map_err(|_| Error::InvalidData {
        op: "arguments",
        message: format!("{name} {value:?} is not a number"),
    })
}

/// The device `--device` names (`auto`, `cpu` or `gpu`).
pub fn device() -> kiln::Result<Device> {
    match arg("--device", "auto").as_str() {
        "cpu" => Ok(Device::cpu()),
        "gpu" => Device::gpu(),
        "auto" => Ok(Device::auto()),
        other => Err(Error::InvalidData {
            op: "arguments",
            message: format!("--device {other:?}: use auto, cpu or gpu"),
        }),
    }
}

/// Prints `usage` and exits when `--help` or `-h` is given.
pub fn help(usage: &str) {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{usage}");
        std::process::exit(0);
    }
}
