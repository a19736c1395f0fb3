//! Delivering a notice to Slack, by the app's config: an incoming webhook (a new message per
//! state), or a Slack app (`slack.token` and `slack.channel`): one living message per release
//! run, posted once (`chat.postMessage`) and edited (`chat.update`) to the furthest state the
//! run reached, never back from an end; the details (a failure's reason, a rollback, an
//! operator's request, releases skipped) go to its thread, and a failure is also broadcast to
//! the channel with the configured mention, so it still pages people.
//!
//! The message's channel and `ts` are kept in the ledger beside the run's announcement markers
//! (`notice#<deployment>`, sort key `message`); one invocation writes it at a time (a lease
//! until its deadline), so two states arriving at once post one message: the second waits
//! briefly, then fails for EventBridge to retry. The `ts` is recorded as soon as Slack gives
//! it, before any other call, so a failure after the post never posts the message again. A
//! deleted message (`message_not_found`) is posted anew. Slack's answer to a post that is lost
//! after Slack acted cannot be found again with `chat:write` alone (finding it would take
//! `channels:history`), so that one fault can leave a second message: the only one.

use std::time::Duration;

use greenlight_shared::invocation::Invocation;
use greenlight_shared::ledger::{Ledger, ReleaseMessage};
use greenlight_shared::queue::Lease;
use greenlight_shared::secrets::{Secret, SecretRef};
use greenlight_shared::slack::{SlackApiError, SlackError};
use greenlight_shared::AppConfig;
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::core::{notice_lease, Deps, Notified, NotifyError, SLACK_DEADLINE_MARGIN};
use crate::message::{self, Notice};

/// Where an app's notices go.
pub(crate) enum Destination {
    Webhook(Secret),
    App { token: Secret, channel: String },
}

/// How long a state waits for another invocation writing the same release's message.
const BUSY_WAIT: Duration = Duration::from_secs(3);

/// The app's destination: its Slack app (token and channel) when it has one, else its webhook;
/// secrets read once per cold start. Neither a URL nor a token appears in a log line or error.
pub(crate) async fn destination_for(
    deps: &Deps,
    app: &AppConfig,
) -> Result<Destination, NotifyError> {
    let parsed = |text: &str| {
        SecretRef::parse(text).map_err(|problem| NotifyError::BadWebhookReference {
            app: app.name.clone(),
            problem,
        })
    };
    if let (Some(token), Some(channel)) = (&app.slack.token, &app.slack.channel) {
        return Ok(Destination::App {
            token: secret(deps, parsed(token)?).await?,
            channel: channel.clone(),
        });
    }
    let reference = match &app.slack.webhook {
        Some(text) => parsed(text)?,
        None => deps
            .default_webhook
            .clone()
            .ok_or_else(|| NotifyError::NoWebhook {
                app: app.name.clone(),
            })?,
    };
    Ok(Destination::Webhook(secret(deps, reference).await?))
}

/// Read once per cold start (`SecretCache`); neither a URL nor a token is ever logged.
async fn secret(deps: &Deps, reference: SecretRef) -> Result<Secret, NotifyError> {
    Ok(deps.webhooks.get(deps.secrets.as_ref(), &reference).await?)
}

/// Delivers a notice: to the webhook, or to the release run's living message.
pub(crate) async fn post_notice(
    deps: &Deps,
    app: &AppConfig,
    destination: &Destination,
    notice: &Notice,
    invocation: &Invocation,
) -> Result<Notified, NotifyError> {
    let (deployment_id, state) = (notice.deployment_id.as_str(), notice.state.as_str());
    if notice.is_outside() && !app.slack.announce_outside {
        info!(app = %app.name, deployment_id = %deployment_id, state = %state,
              "not announced: a deployment outside Greenlight (apps.<app>.slack.announce_outside = false)");
        return Ok(Notified::Ignored {
            reason: format!("deployment {deployment_id} was not started by Greenlight"),
        });
    }
    let message = message::build(notice);
    let deadline = invocation.deadline_minus(SLACK_DEADLINE_MARGIN);
    let attempts = match destination {
        Destination::Webhook(webhook) => {
            post_to_webhook(deps, app, webhook, notice, &message, deadline).await?
        }
        Destination::App { token, channel } => {
            let living = Living {
                deps,
                app,
                token,
                channel,
                deadline,
            };
            // The living message is edited, and an edit pings nobody: the mention goes with the
            // failure's reply that is also sent to the channel.
            let quiet = message::build(&Notice {
                mention_on_failure: None,
                living: true,
                ..notice.clone()
            });
            living.post(notice, &quiet, invocation).await?
        }
    };
    info!(app = %app.name, deployment_id = %deployment_id, state = %state, attempts = attempts,
          version = notice.version.as_deref().unwrap_or(""), "posted to Slack");
    Ok(Notified::Posted {
        app: app.name.clone(),
        state: state.to_string(),
        headline: message.headline,
        attempts,
    })
}

async fn post_to_webhook(
    deps: &Deps,
    app: &AppConfig,
    webhook: &Secret,
    notice: &Notice,
    message: &message::Message,
    deadline: Instant,
) -> Result<u32, NotifyError> {
    deps.slack
        .post(webhook, &message.payload, deadline)
        .await
        .map_err(|source| {
            warn!(app = %app.name, deployment_id = %notice.deployment_id, state = %notice.state, error = %source, "Slack post failed");
            let (app, state) = (app.name.clone(), notice.state.clone());
            match source {
                SlackError::Rejected { .. } => NotifyError::SlackRejected { app, state, source },
                SlackError::GaveUp { .. } => NotifyError::SlackGaveUp { app, state, source },
            }
        })
}

/// How far a state takes a release's living message: it is edited only to a state as far or
/// further, so it never goes back from an end.
fn rank(state: &str) -> u8 {
    match state {
        "QUEUED" | "START" => 1,
        "READY" => 2,
        "APPROVAL" => 3,
        "APPROVED" | "REJECTED" => 4,
        _ => ENDED,
    }
}

/// The rank of an end, and of a queued run's message its deployment took over.
const ENDED: u8 = 5;

/// One app's living message, for one invocation.
struct Living<'a> {
    deps: &'a Deps,
    app: &'a AppConfig,
    token: &'a Secret,
    channel: &'a str,
    deadline: Instant,
}

impl Living<'_> {
    /// Posts or edits the run's message for this state, then its detail in the thread; the
    /// number of Slack calls made.
    async fn post(
        &self,
        notice: &Notice,
        message: &message::Message,
        invocation: &Invocation,
    ) -> Result<u32, NotifyError> {
        let Some(ledger) = self.deps.ledger.as_deref() else {
            // Nowhere to keep the message: each state is a message of its own.
            warn!(app = %self.app.name, "no ledger: each state posted as a new message");
            self.call(notice, self.post_new(&message.payload)).await?;
            return Ok(1);
        };
        let anchor = notice.anchor();
        let lease = notice_lease(invocation);
        let mut shown = self.take(ledger, anchor, &lease).await?;
        if let Some(run) = notice.run.as_deref().filter(|run| *run != anchor) {
            if shown.ts.is_none() && shown.rank == 0 && !notice.thread_only {
                self.take_over(ledger, run, &lease, &mut shown, notice)
                    .await?;
            }
        }
        let outcome = self
            .edit_and_reply(ledger, anchor, &lease, &mut shown, notice, message)
            .await;
        if let Err(e) = ledger.keep_message(anchor, &shown, &lease, true).await {
            warn!(app = %self.app.name, error = %e, "could not record the release's message in the ledger");
        }
        outcome
    }

    /// The run's message for this invocation, waiting briefly while another writes it.
    async fn take(
        &self,
        ledger: &dyn Ledger,
        anchor: &str,
        lease: &Lease,
    ) -> Result<ReleaseMessage, NotifyError> {
        let until = Instant::now() + BUSY_WAIT;
        loop {
            let taken = ledger.take_message(anchor, lease).await;
            match taken {
                Ok(Some(shown)) => return Ok(shown),
                Ok(None) if Instant::now() < until.min(self.deadline) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(None) => {
                    return Err(NotifyError::MessageBusy {
                        app: self.app.name.clone(),
                    })
                }
                Err(e) => {
                    // The message cannot be kept: say it anyway, as a message of its own.
                    warn!(app = %self.app.name, error = %e, "the ledger cannot keep the release's message: posting a new one");
                    return Ok(ReleaseMessage::default());
                }
            }
        }
    }

    /// The run's first deployment state takes over the message posted while the run was
    /// queued (kept under the run's key), and marks that key taken so that a late "queued"
    /// posts nothing. A run that never queued costs the two writes and finds nothing.
    async fn take_over(
        &self,
        ledger: &dyn Ledger,
        run: &str,
        lease: &Lease,
        shown: &mut ReleaseMessage,
        notice: &Notice,
    ) -> Result<(), NotifyError> {
        let mut queued = self.take(ledger, run, lease).await?;
        if queued.ts.is_some() {
            shown.channel = queued.channel.clone();
            shown.ts = queued.ts.clone();
            shown.permalink = queued.permalink.clone();
        }
        queued.rank = ENDED;
        queued.deployment = Some(notice.deployment_id.clone());
        if let Err(e) = ledger.keep_message(run, &queued, lease, true).await {
            warn!(app = %self.app.name, error = %e, "could not mark the queued release's message as taken over");
        }
        Ok(())
    }

    async fn edit_and_reply(
        &self,
        ledger: &dyn Ledger,
        anchor: &str,
        lease: &Lease,
        shown: &mut ReleaseMessage,
        notice: &Notice,
        message: &message::Message,
    ) -> Result<u32, NotifyError> {
        let mut calls = 0;
        let rank = rank(&notice.state);
        let same_deployment = shown
            .deployment
            .as_deref()
            .is_none_or(|d| d == notice.deployment_id);
        // At an equal rank the run's own deployment wins over its rollback deployment: the
        // message says the release FAILED, the thread that it was rolled back.
        let own = notice.deployment_id == anchor;
        if notice.thread_only && shown.ts.is_none() {
            // Nothing to reply to yet (its start not announced): said by the retried event.
            return Err(NotifyError::MessageBusy {
                app: self.app.name.clone(),
            });
        }
        let furthest = !notice.thread_only
            && (shown.rank == 0
                || rank > shown.rank
                || rank == shown.rank && (same_deployment || own));
        // What the message is to show: this state when it is the furthest, else (the message
        // deleted) the furthest state's, as kept, posted again.
        let main = if furthest {
            Some(message.payload.clone())
        } else if shown.ts.is_none() {
            shown
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
        } else {
            None
        };
        if let Some(payload) = &main {
            let edited = match (&shown.channel, &shown.ts) {
                (Some(channel), Some(ts)) => {
                    calls += 1;
                    let update =
                        self.deps
                            .slack_app
                            .update(self.token, channel, ts, payload, self.deadline);
                    match update.await {
                        Ok(()) => true,
                        Err(SlackApiError::MessageNotFound) => {
                            info!(app = %self.app.name, "the release's message was deleted: posting it again");
                            false
                        }
                        Err(source) => return Err(self.failed(notice, source)),
                    }
                }
                _ => false,
            };
            if !edited {
                calls += 1;
                let posted = self.call(notice, self.post_new(payload)).await?;
                shown.channel = Some(posted.channel);
                shown.ts = Some(posted.ts);
                if furthest {
                    shown.payload = Some(message.payload.to_string());
                }
                shown.permalink = None;
                // Kept at once: a failure from here on never posts the message again.
                if let Err(e) = ledger.keep_message(anchor, shown, lease, false).await {
                    warn!(app = %self.app.name, error = %e, "could not record the release's message in the ledger");
                }
            }
            if let (None, Some(channel), Some(ts)) = (&shown.permalink, &shown.channel, &shown.ts) {
                // For people (the command's status and history): best effort.
                calls += 1;
                let link = self
                    .deps
                    .slack_app
                    .permalink(self.token, channel, ts, self.deadline);
                match link.await {
                    Ok(link) => shown.permalink = Some(link),
                    Err(e) => {
                        warn!(app = %self.app.name, error = %e, "no permalink for the release's message")
                    }
                }
            }
            if furthest {
                shown.rank = shown.rank.max(rank);
                shown.deployment = Some(notice.deployment_id.clone());
                shown.payload = Some(message.payload.to_string());
            }
        }
        if let (Some(detail), Some(channel), Some(ts)) =
            (message::thread_detail(notice), &shown.channel, &shown.ts)
        {
            calls += 1;
            let broadcast = message.outcome.mentions() && !notice.thread_only;
            let text = json!({ "text": detail });
            let reply = self.deps.slack_app.post(
                self.token,
                channel,
                &text,
                Some((ts, broadcast)),
                self.deadline,
            );
            match reply.await {
                Ok(_) => {}
                // The message was deleted: the retried event posts it again, then the reply.
                Err(SlackApiError::MessageNotFound) => {
                    shown.channel = None;
                    shown.ts = None;
                    return Err(self.failed(notice, SlackApiError::MessageNotFound));
                }
                Err(source) => return Err(self.failed(notice, source)),
            }
        }
        Ok(calls)
    }

    fn post_new<'a>(
        &'a self,
        payload: &'a serde_json::Value,
    ) -> impl std::future::Future<Output = Result<greenlight_shared::slack::Posted, SlackApiError>> + 'a
    {
        self.deps
            .slack_app
            .post(self.token, self.channel, payload, None, self.deadline)
    }

    async fn call<T>(
        &self,
        notice: &Notice,
        call: impl std::future::Future<Output = Result<T, SlackApiError>>,
    ) -> Result<T, NotifyError> {
        call.await.map_err(|source| self.failed(notice, source))
    }

    fn failed(&self, notice: &Notice, source: SlackApiError) -> NotifyError {
        warn!(app = %self.app.name, deployment_id = %notice.deployment_id, state = %notice.state, error = %source, "Slack call failed");
        match source {
            SlackApiError::Setup { error } => {
                let key = if matches!(
                    error.as_str(),
                    "channel_not_found" | "not_in_channel" | "is_archived"
                ) {
                    "slack.channel"
                } else {
                    "slack.token"
                };
                NotifyError::SlackAppSetup {
                    app: self.app.name.clone(),
                    key: format!("apps.{}.{key}", self.app.name),
                    error,
                }
            }
            source => NotifyError::SlackApp {
                app: self.app.name.clone(),
                state: notice.state.clone(),
                source,
            },
        }
    }
}
