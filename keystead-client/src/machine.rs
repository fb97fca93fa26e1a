//! A machine id: stable on one machine, different per product, and no hardware serial in it. A convenience for
//! telling seats apart, not a defence: anyone can send any machine id.

use sha2::{Digest, Sha256};

/// The OS's own id of this installation: `/etc/machine-id` on Linux, `IOPlatformUUID` on macOS, `MachineGuid`
/// on Windows.
fn os_id() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
    };
    let raw = if cfg!(target_os = "macos") {
        run("ioreg", &["-rd1", "-c", "IOPlatformExpertDevice"]).and_then(|out| {
            out.lines()
                .find(|l| l.contains("IOPlatformUUID"))
                .and_then(|l| l.split('"').nth(3).map(str::to_owned))
        })
    } else if cfg!(target_os = "windows") {
        run(
            "reg",
            &[
                "query",
                r"HKLM\SOFTWARE\Microsoft\Cryptography",
                "/v",
                "MachineGuid",
            ],
        )
        .and_then(|out| out.split_whitespace().last().map(str::to_owned))
    } else {
        read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id"))
    };
    raw.map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// SHA-256 (hex) of `<product_id>:<the OS's id>`; without an OS id, of the host name.
pub fn machine_id(product_id: &str) -> String {
    let source = os_id()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    hex::encode(Sha256::digest(format!("{product_id}:{source}").as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_id_is_stable_per_product_and_hides_the_source() {
        let a = super::machine_id("myapp");
        assert_eq!(a, super::machine_id("myapp"));
        assert_ne!(a, super::machine_id("otherapp"));
        assert_eq!(a.len(), 64);
        if let Some(os) = super::os_id() {
            assert!(!a.contains(&os));
        }
    }
}
