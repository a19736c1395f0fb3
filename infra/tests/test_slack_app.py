"""The Slack app manifest asks for what the notifier calls and nothing more."""
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_slack_app_asks_only_for_the_scopes_its_calls_need():
    manifest = yaml.safe_load((ROOT / "infra" / "slack-app-manifest.yaml").read_text())
    assert manifest["oauth_config"]["scopes"] == {"bot": ["chat:write", "chat:write.public"]}
    assert "user" not in manifest["oauth_config"]["scopes"]
    # The Web API methods the code calls: chat.postMessage and chat.update (chat:write), and
    # chat.getPermalink (no scope).
    slack_rust = (ROOT / "shared" / "src" / "slack.rs").read_text()
    methods = set(re.findall(r'"(chat\.\w+|conversations\.\w+|users\.\w+)"', slack_rust))
    assert methods == {"chat.postMessage", "chat.update", "chat.getPermalink"}, methods
    assert manifest["settings"]["socket_mode_enabled"] is False
