//! The command line: subcommands and flags, parsed by hand (four commands do not need a
//! parser crate).

pub const USAGE: &str = "\
rss-ops: setup and diagnosis of the RusStankoSbyt <-> amoCRM integration

USAGE:
  rss-ops doctor [--json] [--webhook-destination URL]
  rss-ops setup  [--json] [--webhook-destination URL]
  rss-ops parked list [--json] [--limit N]
  rss-ops parked redrive (ID | --all) [--json]
  rss-ops backfill [--since YYYY-MM-DD] [--notes] [--dry-run] [--json]

  doctor   checks the token, pipeline, status, responsible user, custom fields and the
           webhook subscription against the amoCRM account; prints a fix for each problem
  setup    creates the maintenance fields if missing (prints their ids for samconfig.toml)
           and subscribes the webhook destination to lead events; safe to repeat
  parked   lists leads and webhook events that wait for an operator; re-drives one by id,
           or all of them, once the cause is fixed
  backfill registers the machines of every deal already won (status 142) in the synced
           pipelines in their owners' passports, exactly once; resumable, safe to repeat.
           --since: only deals closed from that day; --notes: a note on each old deal that
           lacks a serial number or Telegram ID; --dry-run: read and report, write nothing

Configuration is the functions' own: LEADS_TABLE, INBOX_TABLE, STATE_TABLE, APP_SECRET_ID,
AMOCRM_TOKEN_SECRET_ID, AMOCRM_* ids, and the AWS SDK's (AWS_PROFILE, AWS_REGION, ...).
WEBHOOK_DESTINATION (or --webhook-destination) is where amoCRM sends webhooks, by default
AMOCRM_REDIRECT_URI; the app secret's webhook_token is added as ?token= and never printed.

Exit status: 0 all fine, 1 a problem was found, 2 usage or configuration error.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Doctor { webhook_destination: Option<String> },
    Setup { webhook_destination: Option<String> },
    ParkedList { limit: usize },
    Redrive(RedriveTarget),
    Backfill(BackfillArgs),
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackfillArgs {
    /// Unix seconds of the `--since` day's start (UTC).
    pub since: Option<i64>,
    pub notes: bool,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveTarget {
    One(String),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub json: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}\n\nRun `rss-ops help` for usage.")]
pub struct UsageError(pub String);

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    // `--flag=value` is `--flag value`.
    let args: Vec<String> = args
        .iter()
        .flat_map(|a| match a.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => vec![flag.to_string(), v.to_string()],
            _ => vec![a.clone()],
        })
        .collect();
    let mut json = false;
    let mut all = false;
    let mut destination = None;
    let mut limit = None;
    let mut backfill = BackfillArgs::default();
    let mut backfill_flags = false;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--all" => all = true,
            "-h" | "--help" => words.insert(0, "help".to_string()),
            "--webhook-destination" => destination = Some(value(&mut it, arg)?),
            "--notes" => (backfill.notes, backfill_flags) = (true, true),
            "--dry-run" => (backfill.dry_run, backfill_flags) = (true, true),
            "--since" => {
                let v = value(&mut it, arg)?;
                let day = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                    .map_err(|_| UsageError(format!("--since: not a date (YYYY-MM-DD): {v}")))?;
                backfill.since = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
                backfill_flags = true;
            }
            "--limit" => {
                let v = value(&mut it, arg)?;
                limit =
                    Some(v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        UsageError(format!("--limit: not a positive number: {v}"))
                    })?);
            }
            flag if flag.starts_with("--") => {
                return Err(UsageError(format!("unknown option {flag}")));
            }
            word => words.push(word.to_string()),
        }
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let command = match words.as_slice() {
        [] | ["help", ..] => {
            return Ok(Invocation {
                command: Command::Help,
                json,
            });
        }
        ["doctor"] => Command::Doctor {
            webhook_destination: destination.take(),
        },
        ["setup"] => Command::Setup {
            webhook_destination: destination.take(),
        },
        ["parked"] | ["parked", "list"] => Command::ParkedList {
            limit: limit.take().unwrap_or(100),
        },
        ["parked", "redrive"] if all => Command::Redrive(RedriveTarget::All),
        ["parked", "redrive", id] if !all => Command::Redrive(RedriveTarget::One(id.to_string())),
        ["backfill"] => Command::Backfill(backfill.clone()),
        ["parked", "redrive", ..] => {
            return Err(UsageError(
                "parked redrive takes one id or --all".to_string(),
            ));
        }
        other => return Err(UsageError(format!("unknown command: {}", other.join(" ")))),
    };
    if destination.is_some() {
        return Err(UsageError(
            "--webhook-destination applies to doctor and setup only".into(),
        ));
    }
    if limit.is_some() {
        return Err(UsageError("--limit applies to parked list only".into()));
    }
    if backfill_flags && !matches!(command, Command::Backfill(_)) {
        return Err(UsageError(
            "--since, --notes and --dry-run apply to backfill only".into(),
        ));
    }
    if all && !matches!(command, Command::Redrive(RedriveTarget::All)) {
        return Err(UsageError("--all applies to parked redrive only".into()));
    }
    Ok(Invocation { command, json })
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<String, UsageError> {
    it.next()
        .filter(|v| !v.starts_with("--"))
        .cloned()
        .ok_or_else(|| UsageError(format!("{flag} needs a value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Invocation, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        parse(&args)
    }

    #[test]
    fn commands_and_flags() {
        assert_eq!(
            p("doctor --json").unwrap(),
            Invocation {
                command: Command::Doctor {
                    webhook_destination: None
                },
                json: true
            }
        );
        assert_eq!(
            p("setup --webhook-destination https://x/webhook/amocrm")
                .unwrap()
                .command,
            Command::Setup {
                webhook_destination: Some("https://x/webhook/amocrm".into())
            }
        );
        assert_eq!(
            p("parked list --limit 5").unwrap().command,
            Command::ParkedList { limit: 5 }
        );
        assert_eq!(
            p("parked").unwrap().command,
            Command::ParkedList { limit: 100 }
        );
        assert_eq!(
            p("parked redrive 01JABC").unwrap().command,
            Command::Redrive(RedriveTarget::One("01JABC".into()))
        );
        assert_eq!(
            p("parked redrive --all --json").unwrap(),
            Invocation {
                command: Command::Redrive(RedriveTarget::All),
                json: true
            }
        );
        assert_eq!(
            p("backfill --since 2026-02-09 --dry-run --notes")
                .unwrap()
                .command,
            Command::Backfill(BackfillArgs {
                since: Some(1_770_595_200),
                notes: true,
                dry_run: true
            })
        );
        assert_eq!(p("").unwrap().command, Command::Help);
        assert_eq!(p("doctor --help").unwrap().command, Command::Help);
    }

    #[test]
    fn equals_form_of_flags() {
        assert_eq!(
            p("--json setup --webhook-destination=https://x/w").unwrap(),
            Invocation {
                command: Command::Setup {
                    webhook_destination: Some("https://x/w".into())
                },
                json: true
            }
        );
        assert_eq!(
            p("parked list --limit=3").unwrap().command,
            Command::ParkedList { limit: 3 }
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (line, says) in [
            ("parked redrive", "one id or --all"),
            ("parked redrive a b", "one id or --all"),
            ("parked redrive a --all", "one id or --all"),
            ("doctor --limit 3", "--limit applies"),
            ("doctor --all", "--all applies"),
            (
                "parked list --webhook-destination x",
                "--webhook-destination applies",
            ),
            ("parked list --limit 0", "not a positive number"),
            ("doctor --webhook-destination", "needs a value"),
            ("doctor --verbose", "unknown option --verbose"),
            ("fix everything", "unknown command: fix everything"),
            ("backfill --since 2025-13-01", "not a date"),
            ("doctor --dry-run", "apply to backfill only"),
        ] {
            let e = p(line).unwrap_err();
            assert!(e.0.contains(says), "{line}: {}", e.0);
        }
    }
}
