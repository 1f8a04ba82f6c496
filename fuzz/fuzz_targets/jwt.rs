//! Bearer tokens as a `jwt` consumer (and the OAuth2 access-token check) reads them.
//!
//! Two modes, chosen by the first byte:
//! - raw bytes as a token: no panic; the same answer twice; accepted only if its signature is
//!   the HMAC of its signing input under the consumer's secret (recomputed here with ring);
//! - structure-aware (random bytes never carry a valid HMAC): a valid token for the input's
//!   claims is signed, then one byte of it is changed as the input says: refused, or accepted
//!   with exactly the original subject and expiry (a change that decodes to the same token).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway_core::jose::Verifier;
use gateway_model::entity::JwtConsumerConfig;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "a-fuzzing-secret-of-thirty-two-bytes!!";
const NOW_MS: i64 = 1_800_000_000_000;

fn verifier() -> Verifier {
    let cfg: JwtConsumerConfig = serde_json::from_value(serde_json::json!({
        "verifier": {"alg": "HS256", "secret": SECRET},
        "leeway_s": 60,
    }))
    .expect("a valid config");
    Verifier::new(&cfg).expect("a verifier")
}

fn signature(signing_input: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, signing_input).as_ref())
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let v = verifier();
    if mode % 2 == 0 {
        let first = v.verify(rest, NOW_MS);
        assert_eq!(first, v.verify(rest, NOW_MS), "verifying twice differs");
        if first.is_ok() {
            let text = std::str::from_utf8(rest).expect("an accepted token is text");
            let (input, sig) = text
                .rsplit_once('.')
                .expect("an accepted token has a signature");
            assert_eq!(
                sig,
                signature(input.as_bytes()),
                "accepted without our signature"
            );
        }
        return;
    }
    // Structure-aware: claims from the input, signed, then one byte changed.
    let [at, value, claims @ ..] = rest else {
        return;
    };
    let subject: String = claims
        .iter()
        .take(24)
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    let exp = NOW_MS / 1000 + 3600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"sub": subject, "exp": exp})
            .to_string()
            .as_bytes(),
    );
    let input = format!("{header}.{payload}");
    let token = format!("{input}.{}", signature(input.as_bytes()));
    let original = v
        .verify(token.as_bytes(), NOW_MS)
        .expect("a token we signed verifies");
    assert_eq!(original.subject, subject);
    let mut mutated = token.into_bytes();
    let i = usize::from(*at) * mutated.len() / 256;
    mutated[i] = *value;
    if let Ok(ok) = v.verify(&mutated, NOW_MS) {
        assert_eq!(ok, original, "a changed token verified with other claims");
    }
});
