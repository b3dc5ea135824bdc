//! The org settings the change feed depends on (lifecycle thresholds, booking reminder
//! offsets): read from the org's item, and read once per stream batch and org by the
//! consumer (a batch is mostly one org's writes), not once per record.

use super::timers::DEFAULT_REMINDER_MINUTES;
use crate::error::ApiError;
use crate::states::StageSettings;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// An org's lifecycle thresholds and reminder offsets (its own, else the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSettings {
    pub stages: StageSettings,
    pub reminders: Vec<u32>,
}

impl OrgSettings {
    pub async fn read(store: &Store, org_id: &str) -> Result<OrgSettings, ApiError> {
        let org = store.org(org_id).await?;
        let org = org.as_ref();
        Ok(OrgSettings {
            stages: org.and_then(|org| org.lifecycle).unwrap_or_default(),
            reminders: org
                .and_then(|org| org.reminder_minutes.clone())
                .unwrap_or_else(|| DEFAULT_REMINDER_MINUTES.to_vec()),
        })
    }
}

/// Each org's settings as first read in one batch.
#[derive(Debug, Default)]
pub struct SettingsCache {
    orgs: HashMap<String, Arc<OrgSettings>>,
}

impl SettingsCache {
    pub async fn of(&mut self, store: &Store, org_id: &str) -> Result<Arc<OrgSettings>, ApiError> {
        if let Some(settings) = self.orgs.get(org_id) {
            return Ok(settings.clone());
        }
        let settings = Arc::new(OrgSettings::read(store, org_id).await?);
        self.orgs.insert(org_id.to_owned(), settings.clone());
        Ok(settings)
    }
}
