//! The three-way merge of one machine's maintenance values with what amoCRM reports.
//!
//! The base is what amoCRM held as far as we know (`SyncMarks::amo`: last read, or last written
//! by us). Per field: amoCRM's value equal to the base is no change (our own writes coming back
//! are recognised this way); a change on one side only is taken; a change on both sides to
//! different values is a conflict that the later change wins (our `local_changed_at` against the
//! deal's `updated_at`, at second precision), amoCRM winning ties. A reading older than the last
//! one we confirmed is stale and ignored, so a late webhook never undoes newer values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::AmoReading;
use crate::passport::{Equipment, EquipmentState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Status,
    NextDue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Ours,
    Amo,
}

/// Both sides changed one field to different values since the last sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub amo_lead_id: i64,
    pub serial: String,
    pub field: Field,
    pub ours: String,
    pub amo: String,
    pub ours_changed_at: Option<DateTime<Utc>>,
    pub amo_updated_at: i64,
    pub winner: Side,
}

/// What a reading does to a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Nothing to write: amoCRM reports the base (unchanged, or our own values coming back).
    Unchanged,
    /// Older than what we already confirmed, or the machine is revoked.
    Ignored,
    /// The machine to write back (`sync.version` unchanged: the store bumps it).
    Changed {
        equipment: Box<Equipment>,
        conflicts: Vec<Conflict>,
    },
}

/// Whether our change beats amoCRM's: strictly later, at second precision.
fn ours_is_later(ours: Option<DateTime<Utc>>, amo_updated_at: i64) -> bool {
    ours.is_some_and(|t| t.timestamp() > amo_updated_at)
}

/// One field's merge. `Some(winner)` when it was a conflict.
fn merge_field<T: PartialEq + Copy + ToString>(
    ours: &mut T,
    base: &mut Option<T>,
    theirs: Option<T>,
    ours_changed_at: Option<DateTime<Utc>>,
    amo_updated_at: i64,
) -> Option<(String, String, Side)> {
    let theirs = theirs?; // empty in amoCRM: not a value
    if Some(theirs) == *base {
        return None;
    }
    let we_changed = Some(*ours) != *base;
    *base = Some(theirs);
    if !we_changed || *ours == theirs {
        *ours = theirs;
        return None;
    }
    let (ours_text, theirs_text) = (ours.to_string(), theirs.to_string());
    if ours_is_later(ours_changed_at, amo_updated_at) {
        // Keep ours; the base is amoCRM's value now, so the push overwrites it.
        Some((ours_text, theirs_text, Side::Ours))
    } else {
        *ours = theirs;
        Some((ours_text, theirs_text, Side::Amo))
    }
}

/// Struct fields of `MaintenanceStatus` print as their snake-case names.
#[derive(Clone, Copy, PartialEq)]
struct Status(crate::passport::MaintenanceStatus);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

pub fn merge(current: &Equipment, reading: &AmoReading) -> Merge {
    if current.state != EquipmentState::Active {
        return Merge::Ignored;
    }
    if current
        .sync
        .amo_updated_at
        .is_some_and(|seen| reading.updated_at < seen)
    {
        return Merge::Ignored;
    }
    let mut next = current.clone();
    let changed_at = current.sync.local_changed_at;
    let at = reading.updated_at;
    let mut conflicts = Vec::new();
    let mut conflict = |field: Field, found: Option<(String, String, Side)>| {
        if let Some((ours, amo, winner)) = found {
            conflicts.push(Conflict {
                amo_lead_id: current.amo_lead_id,
                serial: current.serial.clone(),
                field,
                ours,
                amo,
                ours_changed_at: changed_at,
                amo_updated_at: at,
                winner,
            });
        }
    };

    let mut status = Status(next.maintenance.status);
    let mut base_status = next.sync.amo.status.map(Status);
    conflict(
        Field::Status,
        merge_field(
            &mut status,
            &mut base_status,
            reading.status.map(Status),
            changed_at,
            at,
        ),
    );
    next.maintenance.status = status.0;
    next.sync.amo.status = base_status.map(|s| s.0);

    conflict(
        Field::NextDue,
        merge_field(
            &mut next.maintenance.next_due,
            &mut next.sync.amo.next_due,
            reading.next_due,
            changed_at,
            at,
        ),
    );

    if next.maintenance == current.maintenance && next.sync.amo == current.sync.amo {
        return Merge::Unchanged;
    }
    next.sync.amo_updated_at = Some(at.max(current.sync.amo_updated_at.unwrap_or(at)));
    if next.maintenance != current.maintenance {
        next.updated_at = Utc::now();
    }
    Merge::Changed {
        equipment: Box::new(next),
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::passport::{AmoValues, Maintenance, MaintenanceStatus as S, SyncMarks};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    /// A machine with our values `ours`, last synced as `base`, changed by us at `changed_at`.
    fn machine(ours: (S, u32), base: (S, u32), changed_at: i64) -> Equipment {
        Equipment {
            owner_telegram_id: 42,
            amo_contact_id: None,
            serial: "SN-1".into(),
            model: Some("16К20".into()),
            purchased_at: at(0),
            amo_lead_id: 7,
            maintenance: Maintenance {
                status: ours.0,
                next_due: day(ours.1),
            },
            state: EquipmentState::Active,
            updated_at: at(changed_at),
            sync: SyncMarks {
                version: 3,
                local_changed_at: Some(at(changed_at)),
                amo: AmoValues {
                    status: Some(base.0),
                    next_due: Some(day(base.1)),
                },
                amo_updated_at: Some(500),
                ..SyncMarks::default()
            },
        }
    }

    fn reading(status: Option<S>, due: Option<u32>, updated_at: i64) -> AmoReading {
        AmoReading {
            lead_id: 7,
            pipeline_id: Some(1),
            status,
            next_due: due.map(day),
            updated_at,
            owner_hint: None,
        }
    }

    fn changed(m: Merge) -> (Equipment, Vec<Conflict>) {
        match m {
            Merge::Changed {
                equipment,
                conflicts,
            } => (*equipment, conflicts),
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn our_own_values_coming_back_are_not_a_change() {
        // We wrote (done, 10) and amoCRM reports exactly that, later.
        let e = machine((S::Done, 10), (S::Done, 10), 600);
        assert_eq!(
            merge(&e, &reading(Some(S::Done), Some(10), 700)),
            Merge::Unchanged
        );
        // Even after we changed again locally: the echo of the old write keeps our new values.
        let e = machine((S::Scheduled, 12), (S::Done, 10), 800);
        assert_eq!(
            merge(&e, &reading(Some(S::Done), Some(10), 700)),
            Merge::Unchanged
        );
    }

    #[test]
    fn a_change_in_amocrm_only_is_taken_and_becomes_the_base() {
        let e = machine((S::Ok, 10), (S::Ok, 10), 100);
        let (next, conflicts) = changed(merge(&e, &reading(Some(S::Scheduled), Some(20), 900)));
        assert!(conflicts.is_empty());
        assert_eq!(next.maintenance.status, S::Scheduled);
        assert_eq!(next.maintenance.next_due, day(20));
        assert_eq!(next.sync.amo, AmoValues::of(&next.maintenance));
        assert_eq!(next.sync.amo_updated_at, Some(900));
        assert_eq!(next.sync.local_changed_at, e.sync.local_changed_at);
        assert!(!next.needs_push());
    }

    #[test]
    fn a_change_on_our_side_only_stays_to_be_pushed() {
        let e = machine((S::Done, 20), (S::Ok, 10), 900);
        assert_eq!(
            merge(&e, &reading(Some(S::Ok), Some(10), 950)),
            Merge::Unchanged
        );
        assert!(e.needs_push());
    }

    #[test]
    fn both_changed_the_later_change_wins_and_amocrm_wins_ties() {
        // Ours at 1000, amoCRM's at 900: ours wins, amoCRM's value becomes the base.
        let e = machine((S::Done, 10), (S::Ok, 10), 1000);
        let (next, conflicts) = changed(merge(&e, &reading(Some(S::Scheduled), None, 900)));
        assert_eq!(next.maintenance.status, S::Done);
        assert_eq!(next.sync.amo.status, Some(S::Scheduled));
        assert!(next.needs_push());
        assert_eq!(conflicts.len(), 1);
        let c = &conflicts[0];
        assert_eq!((c.field, c.winner), (Field::Status, Side::Ours));
        assert_eq!((c.ours.as_str(), c.amo.as_str()), ("done", "scheduled"));
        assert_eq!(c.amo_updated_at, 900);

        // amoCRM's later: amoCRM wins.
        let (next, conflicts) = changed(merge(&e, &reading(Some(S::Scheduled), None, 1001)));
        assert_eq!(next.maintenance.status, S::Scheduled);
        assert!(!next.needs_push());
        assert_eq!(conflicts[0].winner, Side::Amo);

        // Same second: amoCRM wins.
        let (next, conflicts) = changed(merge(&e, &reading(Some(S::Scheduled), None, 1000)));
        assert_eq!(next.maintenance.status, S::Scheduled);
        assert_eq!(conflicts[0].winner, Side::Amo);
    }

    #[test]
    fn fields_merge_separately() {
        // We changed the date, the manager the status: both are kept, no conflict.
        let e = machine((S::Ok, 25), (S::Ok, 10), 1000);
        let (next, conflicts) = changed(merge(&e, &reading(Some(S::Scheduled), Some(10), 1100)));
        assert!(conflicts.is_empty());
        assert_eq!(
            (next.maintenance.status, next.maintenance.next_due),
            (S::Scheduled, day(25))
        );
        assert!(next.needs_push(), "our date still goes to amoCRM");
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_conflict() {
        // Our write reached amoCRM but we never recorded it (crash): the pull recognises it.
        let e = machine((S::Done, 20), (S::Ok, 10), 1000);
        let (next, conflicts) = changed(merge(&e, &reading(Some(S::Done), Some(20), 1001)));
        assert!(conflicts.is_empty());
        assert!(!next.needs_push());
    }

    #[test]
    fn stale_readings_empty_fields_and_revoked_machines_change_nothing() {
        let e = machine((S::Ok, 10), (S::Ok, 10), 100);
        assert_eq!(
            merge(&e, &reading(Some(S::Done), Some(20), 499)),
            Merge::Ignored
        );
        assert_eq!(merge(&e, &reading(None, None, 900)), Merge::Unchanged);
        let mut revoked = e.clone();
        revoked.state = EquipmentState::Revoked;
        assert_eq!(
            merge(&revoked, &reading(Some(S::Done), None, 900)),
            Merge::Ignored
        );
    }

    #[test]
    fn a_machine_never_synced_takes_amocrm_values_set_before_our_first_push() {
        let mut e = machine((S::Ok, 10), (S::Ok, 10), 100);
        e.sync.amo = AmoValues::default();
        e.sync.amo_updated_at = None;
        // The manager typed a date later than our registration: theirs wins.
        let (next, conflicts) = changed(merge(&e, &reading(None, Some(15), 200)));
        assert_eq!(next.maintenance.next_due, day(15));
        assert_eq!(conflicts[0].winner, Side::Amo);
        assert!(next.needs_push(), "the status still has to reach amoCRM");
    }
}
