//! `switchboard cert`: a private certificate authority and server certificate for LAN use.
//!
//! A household gateway has no public DNS name, so a public CA cannot certify it. Instead
//! [`generate`] makes a small CA once (`ca.pem`, `ca-key.pem`), installed as trusted on the
//! phones and laptops that use the dashboard, and a server certificate signed by it
//! (`server.pem`, `server-key.pem`) naming every way the gateway is reached: the given host
//! names, `localhost`, `127.0.0.1`, `::1` and this machine's LAN IPv4 addresses. Running the
//! command again keeps an existing CA (phones need not trust a new one) and issues a fresh
//! server certificate; `SIGHUP` makes a running gateway load it.
//!
//! The server certificate is valid for 825 days, the longest iOS accepts for a TLS server
//! certificate; the CA for ten years. Keys are ECDSA P-256, written with mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// `switchboard cert`: generate a CA and a server certificate for LAN use.
#[derive(Debug, Clone, clap::Args)]
pub struct CertArgs {
    /// Directory for ca.pem, ca-key.pem, server.pem and server-key.pem (an existing CA there is
    /// reused).
    #[arg(long, value_name = "DIR", default_value = "./switchboard-tls")]
    pub out: PathBuf,
    /// Extra DNS name for the server certificate (repeatable), e.g. `switchboard.lan`.
    #[arg(long = "name", value_name = "HOSTNAME")]
    pub names: Vec<String>,
    /// Extra IP address for the server certificate (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Do not add this machine's LAN IPv4 addresses.
    #[arg(long)]
    pub no_lan: bool,
    /// Instead of a server certificate, issue a client certificate with this common name
    /// (`[tls] client_ca` then makes it the client's user name).
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
}

/// Runs `switchboard cert`, printing what was written and how to use it.
///
/// # Errors
/// As [`generate`] and [`issue_client`].
pub fn run(args: &CertArgs) -> anyhow::Result<()> {
    if let Some(cn) = &args.client {
        let (cert, key) = issue_client(&args.out, cn)?;
        println!(
            "Wrote {} and {} (common name \"{cn}\").\n\
             With [tls] client_ca = \"{}\", a client presenting it is user \"{cn}\".\n\
             mosquitto_pub: --cafile {} --cert {} --key {}",
            cert.display(),
            key.display(),
            args.out.join("ca.pem").display(),
            args.out.join("ca.pem").display(),
            cert.display(),
            key.display()
        );
        return Ok(());
    }
    let generated = generate(&args.out, &args.names, &args.ips, !args.no_lan)?;
    print!("{}", instructions(&generated));
    Ok(())
}

/// Subject common name of the generated CA.
pub const CA_NAME: &str = "Switchboard local CA";
/// Validity of a server or client certificate, in days (iOS's limit for TLS server
/// certificates).
const LEAF_DAYS: i64 = 825;
/// Validity of the CA, in days.
const CA_DAYS: i64 = 3650;

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate to install on clients.
    pub ca: PathBuf,
    /// The CA private key (keep it; needed to issue further certificates).
    pub ca_key: PathBuf,
    /// The server certificate chain (`[tls] cert`).
    pub server: PathBuf,
    /// The server private key (`[tls] key`).
    pub server_key: PathBuf,
    /// Whether the CA already existed and was reused.
    pub reused_ca: bool,
    /// The names and addresses in the server certificate.
    pub names: Vec<String>,
    /// The server certificate's serial number, hex.
    pub serial: String,
}

/// Creates (or reuses) the CA in `dir` and issues a server certificate for `names` and `ips`
/// plus `localhost`, `127.0.0.1`, `::1` and, when `lan` is set, this machine's non-loopback
/// IPv4 addresses.
///
/// # Errors
/// When a file cannot be read or written, or a name is not a valid DNS name.
pub fn generate(
    dir: &Path,
    names: &[String],
    ips: &[IpAddr],
    lan: bool,
) -> anyhow::Result<Generated> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (issuer, reused_ca) = ca(dir)?;

    let mut dns: Vec<String> = Vec::new();
    for name in names.iter().map(String::as_str).chain(["localhost"]) {
        if !dns.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            dns.push(name.to_owned());
        }
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    let lan_addrs = if lan { lan_ipv4() } else { Vec::new() };
    for ip in ips
        .iter()
        .copied()
        .chain(["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")])
        .chain(lan_addrs)
    {
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    let mut params = leaf_params(dns.first().map_or("localhost", String::as_str))?;
    for name in &dns {
        params.subject_alt_names.push(SanType::DnsName(
            name.as_str()
                .try_into()
                .with_context(|| format!("`{name}` is not a valid DNS name"))?,
        ));
    }
    params
        .subject_alt_names
        .extend(addrs.iter().copied().map(SanType::IpAddress));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serial = hex(params
        .serial_number
        .as_ref()
        .map(SerialNumber::as_ref)
        .unwrap_or_default());
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let server = dir.join("server.pem");
    let server_key = dir.join("server-key.pem");
    // Key first: a reload between the two writes then fails to match and keeps the old pair.
    crate::files::write_private(&server_key, key.serialize_pem().as_bytes())?;
    std::fs::write(&server, cert.pem())
        .with_context(|| format!("cannot write {}", server.display()))?;
    let mut listed = dns;
    listed.extend(addrs.iter().map(ToString::to_string));
    Ok(Generated {
        ca: dir.join("ca.pem"),
        ca_key: dir.join("ca-key.pem"),
        server,
        server_key,
        reused_ca,
        names: listed,
        serial,
    })
}

/// Issues a client certificate with common name `cn`, signed by the CA in `dir` (which must
/// exist), written as `client-<cn>.pem` and `client-<cn>-key.pem`. The gateway with
/// `[tls] client_ca` set to the CA then takes `cn` as the user name of a client presenting it.
///
/// # Errors
/// When the CA is missing or a file cannot be written.
pub fn issue_client(dir: &Path, cn: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    if cn.is_empty() || cn.contains(['/', '\\']) || cn.starts_with('.') {
        anyhow::bail!("a client name must be non-empty and contain no path separator");
    }
    if !dir.join("ca-key.pem").exists() {
        anyhow::bail!(
            "no CA in {}: run `switchboard cert --out {}` first",
            dir.display(),
            dir.display()
        );
    }
    let (issuer, _) = ca(dir)?;
    let mut params = leaf_params(cn)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let cert_path = dir.join(format!("client-{cn}.pem"));
    let key_path = dir.join(format!("client-{cn}-key.pem"));
    crate::files::write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

/// How to use and trust the generated files, for the terminal.
#[must_use]
pub fn instructions(generated: &Generated) -> String {
    let ca = generated.ca.display();
    let names = generated.names.join(", ");
    let reused = if generated.reused_ca {
        "Reused the existing CA: devices that already trust it need nothing new.\n"
    } else {
        ""
    };
    let server = generated.server.display();
    let key = generated.server_key.display();
    let ca_key = generated.ca_key.display();
    let serial = &generated.serial;
    [
        format!("Wrote {server} (serial {serial}) and {key}, signed by {ca}."),
        format!("{reused}The server certificate is valid for: {names}"),
        String::new(),
        "Configuration (switchboard.toml):".to_owned(),
        String::new(),
        "[tls]".to_owned(),
        format!("cert = \"{server}\""),
        format!("key = \"{key}\""),
        String::new(),
        "MQTT over TLS then listens on 0.0.0.0:8883 (change with [listeners] mqtts = [...]) and"
            .to_owned(),
        "the HTTP listener serves HTTPS and WSS. A running gateway reloads the files on SIGHUP."
            .to_owned(),
        String::new(),
        format!("Trust the CA ({ca}) on each device (never share {ca_key}):"),
        "- iPhone/iPad: AirDrop or email ca.pem to the device and open it, then".to_owned(),
        "    Settings > General > VPN & Device Management > install the profile, then".to_owned(),
        format!(
            "    Settings > General > About > Certificate Trust Settings > enable full trust for \"{CA_NAME}\"."
        ),
        "- Android: copy ca.pem to the device, then Settings > Security > Encryption &".to_owned(),
        "    credentials > Install a certificate > CA certificate, and pick the file.".to_owned(),
        format!("- mosquitto_pub / mosquitto_sub: -p 8883 --cafile {ca}"),
        "- Linux: copy it to /usr/local/share/ca-certificates/switchboard.crt and run".to_owned(),
        "    update-ca-certificates.".to_owned(),
    ]
    .into_iter()
    .fold(String::new(), |mut out, line| {
        out.push_str(&line);
        out.push('\n');
        out
    })
}

/// The CA in `dir`: loaded from `ca-key.pem` (with the well-known subject) when present, else
/// created. The second value tells whether it was reused.
fn ca(dir: &Path) -> anyhow::Result<(Issuer<'static, KeyPair>, bool)> {
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca-key.pem");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Switchboard");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if key_path.exists() && cert_path.exists() {
        let pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("cannot read {}", key_path.display()))?;
        let key = KeyPair::from_pem(&pem)
            .with_context(|| format!("invalid CA key {}", key_path.display()))?;
        // Signing needs only the subject and the key; the existing ca.pem stays as it is.
        return Ok((Issuer::new(params, key), true));
    }
    set_validity(&mut params, CA_DAYS);
    params.serial_number = Some(random_serial()?);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    crate::files::write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    Ok((Issuer::new(params, key), false))
}

fn leaf_params(cn: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    set_validity(&mut params, LEAF_DAYS);
    params.serial_number = Some(random_serial()?);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and 16 bytes long
    Ok(SerialNumber::from_slice(&bytes))
}

/// Valid from yesterday (clock skew) to `days` from today, midnight UTC.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let ymd = |n: i64| {
        let (y, m, d) = switchboard_devices::civil::from_days(n);
        rcgen::date_time_ymd(i32::try_from(y).unwrap_or(9999), m, d)
    };
    params.not_before = ymd(today - 1);
    params.not_after = ymd(today + days);
}

/// This machine's non-loopback IPv4 addresses.
fn lan_ipv4() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_reuses_the_ca_and_renews_the_server_certificate() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), &["plugs.lan".to_owned()], &[], false).unwrap();
        assert!(!first.reused_ca);
        assert!(first.names.contains(&"plugs.lan".to_owned()));
        assert!(first.names.contains(&"::1".to_owned()));
        let ca = std::fs::read(&first.ca).unwrap();
        let mode = std::fs::metadata(&first.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = generate(dir.path(), &[], &[], false).unwrap();
        assert!(second.reused_ca);
        assert_ne!(first.serial, second.serial);
        assert_eq!(std::fs::read(&second.ca).unwrap(), ca, "the CA is kept");
        let text = instructions(&second);
        assert!(text.contains("Certificate Trust Settings"));
        assert!(text.contains("[tls]"));
        assert!(issue_client(dir.path(), "plug-1").is_ok());
        assert!(issue_client(dir.path(), "../x").is_err());
    }
}
