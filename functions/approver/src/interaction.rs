//! A Slack interaction (a button click), read from a body whose signature was checked:
//! `application/x-www-form-urlencoded` with one JSON `payload` field.

use serde::Deserialize;

/// The click: who, which button, what it carries, and where to answer them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub user: String,
    pub action: String,
    pub value: String,
    pub response_url: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<Action>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: String,
}

/// The click a body carries; `None` for anything else (another interaction, no button).
pub fn click_of(body: &[u8]) -> Result<Option<Click>, String> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or("no payload field")?;
    let payload: Payload =
        serde_json::from_str(&payload).map_err(|e| format!("the payload is not Slack's: {e}"))?;
    if payload.kind != "block_actions" {
        return Ok(None);
    }
    Ok(payload.actions.into_iter().next().map(|a| Click {
        user: payload.user.id,
        action: a.action_id,
        value: a.value,
        response_url: payload.response_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(payload: &str) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", payload)
            .finish()
            .into_bytes()
    }

    #[test]
    fn a_button_click_is_read_and_anything_else_is_not_a_click() {
        let body = form(
            r#"{"type":"block_actions","user":{"id":"U024BE7LH","username":"alice"},"actions":[{"action_id":"approve","value":"web1|sha256:aa|1|d-1","type":"button"}],"response_url":"https://hooks.slack.com/actions/T1/1/x"}"#,
        );
        assert_eq!(
            click_of(&body).unwrap(),
            Some(Click {
                user: "U024BE7LH".into(),
                action: "approve".into(),
                value: "web1|sha256:aa|1|d-1".into(),
                response_url: Some("https://hooks.slack.com/actions/T1/1/x".into()),
            })
        );
        let other = form(r#"{"type":"view_submission","user":{"id":"U1"}}"#);
        assert_eq!(click_of(&other).unwrap(), None);
        assert!(click_of(b"text=hello").is_err());
        assert!(click_of(&form("{not json")).is_err());
    }
}
