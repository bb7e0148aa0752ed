//! Duplicate households in the store: detection over an area, and the reversible merge
//! (`kunjung_core::merge`) with both documents and their projections updated.

use kunjung_core::checklist::AnswerValue;
use kunjung_core::merge::{find_duplicates, DuplicatePair, MergeSummary};
use kunjung_core::{FieldEdit, HouseholdStatus};
use uuid::Uuid;

use crate::{project, Result, Store, StoreError};

impl Store {
    /// Suspected duplicate households in `area` (all when `None`).
    pub fn duplicate_households(&mut self, area: Option<&str>) -> Result<Vec<DuplicatePair>> {
        Ok(find_duplicates(&self.household_views(area)?))
    }

    /// Merges household `from` into `into`: its members (unless already there), visits and
    /// referrals are copied into `into` with their provenance, then `from` is marked
    /// `merged` with `merged_into`. Running it again after an interruption copies nothing
    /// twice.
    pub fn merge_households(&mut self, from: Uuid, into: Uuid) -> Result<MergeSummary> {
        let source = self.doc(from)?.read()?;
        let target = self.doc(into)?.read()?;
        if source.household.status == HouseholdStatus::Merged
            && source.household.merged_into != Some(into)
        {
            return Err(StoreError::Invalid(format!(
                "rumah tangga {from} sudah digabung ke rumah tangga lain (already merged elsewhere)"
            )));
        }
        if target.household.status != HouseholdStatus::Active {
            return Err(StoreError::Invalid(format!(
                "rumah tangga tujuan {into} tidak aktif (the target household is not active)"
            )));
        }
        let summary = self.write(
            into,
            |d, meta| d.absorb(&source, meta),
            |_| project::Mode::Full { conflicts: false },
        )?;
        self.edit(
            from,
            &[
                FieldEdit {
                    path: "household/status".into(),
                    value: Some(AnswerValue::Text("merged".into())),
                },
                FieldEdit {
                    path: "household/merged_into".into(),
                    value: Some(AnswerValue::Text(into.to_string())),
                },
            ],
            &format!("household.merge_into {into}"),
        )?;
        Ok(summary)
    }

    /// Undoes a merge of `id`: the copies in the household it was merged into are voided
    /// (referral copies removed) and `id` is active again. Returns the target household
    /// and how many records were touched there.
    pub fn unmerge_household(&mut self, id: Uuid) -> Result<(Uuid, usize)> {
        let v = self.doc(id)?.read()?;
        let target = match (v.household.status, v.household.merged_into) {
            (HouseholdStatus::Merged, Some(t)) => t,
            _ => {
                return Err(StoreError::Invalid(format!(
                    "rumah tangga {id} tidak berstatus digabung (household is not merged)"
                )))
            }
        };
        let n = self.write(
            target,
            |d, meta| d.release(id, meta),
            |_| project::Mode::Full { conflicts: false },
        )?;
        self.edit(
            id,
            &[
                FieldEdit {
                    path: "household/status".into(),
                    value: Some(AnswerValue::Text("active".into())),
                },
                FieldEdit {
                    path: "household/merged_into".into(),
                    value: None,
                },
            ],
            &format!("household.unmerge {target}"),
        )?;
        Ok((target, n))
    }
}
