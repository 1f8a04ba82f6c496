use super::*;

fn info(not_before_ms: i64, not_after_ms: i64) -> CertInfo {
    CertInfo {
        subject: "CN=a".to_owned(),
        issuer: "CN=a".to_owned(),
        common_name: Some("A.Example.COM.".to_owned()),
        serial_hex: "1".to_owned(),
        sans: Vec::new(),
        not_before_ms,
        not_after_ms,
        sha256: [0xab; 32],
        is_ca: false,
        self_issued: true,
    }
}

#[test]
fn validity_is_inclusive_at_both_ends() {
    let c = info(1_000, 2_000);
    assert_eq!(c.validity_at(999), Validity::NotYetValid);
    assert_eq!(c.validity_at(1_000), Validity::Valid);
    assert_eq!(c.validity_at(2_000), Validity::Valid);
    assert_eq!(c.validity_at(2_001), Validity::Expired);
}

#[test]
fn dns_names_prefer_sans_and_fall_back_to_a_hostlike_cn() {
    let mut c = info(0, 1);
    assert_eq!(c.dns_names(), vec!["a.example.com"]);
    c.common_name = Some("Otoroshi Default Root CA".to_owned());
    assert!(c.dns_names().is_empty(), "a CN with spaces is no host name");
    c.sans = vec![
        SubjectAltName::Ip(IpAddr::from([127, 0, 0, 1])),
        SubjectAltName::Dns("*.API.example.com".to_owned()),
        SubjectAltName::Dns("b.example.com.".to_owned()),
        SubjectAltName::Email("ops@example.com".to_owned()),
    ];
    assert_eq!(c.dns_names(), vec!["*.api.example.com", "b.example.com"]);
    assert_eq!(c.sha256_hex(), "ab".repeat(32));
}

#[test]
fn dn_values_are_escaped_as_rfc_4514_says() {
    assert_eq!(escape_dn_value("plain"), "plain");
    assert_eq!(escape_dn_value("a,b+c"), "a\\,b\\+c");
    assert_eq!(escape_dn_value("#x "), "\\#x\\ ");
    assert_eq!(escape_dn_value(" lead"), "\\ lead");
    assert_eq!(escape_dn_value("a\nb"), "a\\0ab");
}

#[test]
fn pem_errors_never_quote_the_bytes() {
    let text = "-----BEGIN PRIVATE KEY-----\nTOP SECRET !!\n-----END PRIVATE KEY-----\n";
    let e = parse_pem_key(text).unwrap_err();
    assert!(matches!(e, CertError::Pem(_)), "{e:?}");
    assert!(!e.to_string().contains("SECRET"), "{e}");
    let e = parse_pem_key("-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap_err();
    assert!(!e.to_string().contains("AAAA"), "{e}");
}

#[test]
fn times_read_as_dates() {
    assert_eq!(format_ms(1_575_716_325_000), "Dec  7 10:58:45 2019 +00:00");
}
