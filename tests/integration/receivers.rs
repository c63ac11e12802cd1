//! Local receivers: Slack/Discord webhook stand-ins, an SMTP server (aiosmtpd) and a CalDAV server (radicale).
