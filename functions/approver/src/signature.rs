//! Slack's request signature, checked before anything of a request is parsed: `v0=` + hex
//! HMAC-SHA256(signing secret, `v0:` + `X-Slack-Request-Timestamp` + `:` + raw body), compared
//! in constant time (`ring::hmac::verify`), the timestamp within five minutes of now (a
//! replay of an older request is refused), the body at most [`BODY_MAX`] bytes.

use ring::hmac;

/// What Slack sends for a button click is a few KB; anything far larger is not Slack's.
pub const BODY_MAX: usize = 64 * 1024;

/// How far a request's timestamp may be from now, either way.
pub const SKEW_MAX_SECS: i64 = 5 * 60;

/// Why a request was refused (said in the log; the caller answers 401 and nothing else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the request is larger than {BODY_MAX} bytes")]
    TooLarge,
    #[error("no Slack signature or timestamp")]
    Unsigned,
    #[error("the timestamp is not within five minutes of now (a replay, or a stale request)")]
    Stale,
    #[error("the signature does not match (a forged request, or another signing secret)")]
    Forged,
}

/// What can be refused without the secret: an oversized, unsigned or stale request (no
/// secret is read, and no AWS call made, for those).
pub fn screen(
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), Refused> {
    if body.len() > BODY_MAX {
        return Err(Refused::TooLarge);
    }
    let (Some(timestamp), Some(_)) = (timestamp, signature) else {
        return Err(Refused::Unsigned);
    };
    let sent: i64 = timestamp.trim().parse().map_err(|_| Refused::Unsigned)?;
    if (now_secs - sent).abs() > SKEW_MAX_SECS {
        return Err(Refused::Stale);
    }
    Ok(())
}

/// Checks a request as Slack signs it.
pub fn verify(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), Refused> {
    screen(timestamp, signature, body, now_secs)?;
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Refused::Unsigned);
    };
    let tag = signature
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or(Refused::Forged)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret);
    let mut signed = Vec::with_capacity(body.len() + timestamp.len() + 4);
    signed.extend_from_slice(b"v0:");
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b':');
    signed.extend_from_slice(body);
    hmac::verify(&key, &signed, &tag).map_err(|_| Refused::Forged)
}

/// `v0=` + hex HMAC-SHA256: how Slack signs, for the local stand-in and the tests.
pub fn sign(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret);
    let mut signed = format!("v0:{timestamp}:").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const NOW: i64 = 1_765_000_000;

    #[test]
    fn a_request_slack_signed_passes_and_any_change_is_refused() {
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let ts = NOW.to_string();
        let signature = sign(SECRET, &ts, body);
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&signature), body, NOW),
            Ok(())
        );
        // Another body, another secret, another timestamp under the same signature.
        let forged = b"payload=%7B%22type%22%3A%22block_actions%22%7E";
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&signature), forged, NOW),
            Err(Refused::Forged)
        );
        assert_eq!(
            verify(b"another", Some(&ts), Some(&signature), body, NOW),
            Err(Refused::Forged)
        );
        let later = (NOW + 1).to_string();
        assert_eq!(
            verify(SECRET, Some(&later), Some(&signature), body, NOW),
            Err(Refused::Forged)
        );
        for bad in [
            "",
            "v0=",
            "v1=00",
            "v0=zz",
            &signature[..signature.len() - 1],
        ] {
            assert_eq!(
                verify(SECRET, Some(&ts), Some(bad), body, NOW),
                Err(Refused::Forged),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_stale_an_unsigned_or_an_oversized_request_is_refused_before_any_hmac() {
        let body = b"payload=%7B%7D";
        let old = (NOW - SKEW_MAX_SECS - 1).to_string();
        let signature = sign(SECRET, &old, body);
        assert_eq!(
            verify(SECRET, Some(&old), Some(&signature), body, NOW),
            Err(Refused::Stale)
        );
        let ahead = (NOW + SKEW_MAX_SECS + 1).to_string();
        let signature = sign(SECRET, &ahead, body);
        assert_eq!(
            verify(SECRET, Some(&ahead), Some(&signature), body, NOW),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(SECRET, None, Some("v0=00"), body, NOW),
            Err(Refused::Unsigned)
        );
        assert_eq!(
            verify(SECRET, Some("soon"), Some("v0=00"), body, NOW),
            Err(Refused::Unsigned)
        );
        let big = vec![b'a'; BODY_MAX + 1];
        let ts = NOW.to_string();
        let signature = sign(SECRET, &ts, &big);
        assert_eq!(
            verify(SECRET, Some(&ts), Some(&signature), &big, NOW),
            Err(Refused::TooLarge)
        );
    }

    #[test]
    fn the_signature_matches_slacks_documented_example() {
        // api.slack.com/authentication/verifying-requests-from-slack
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(
            sign(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            expected
        );
        assert_eq!(
            verify(
                b"8f742231b10e8888abcd99yyyzzz85a5",
                Some("1531420618"),
                Some(expected),
                body,
                1_531_420_618 + 60
            ),
            Ok(())
        );
    }
}
