//! Global Privacy Control: what a GPC signal means under a CCPA-type law.
//!
//! Under the CCPA/CPRA and the US state laws modelled on it, a browser's GPC signal is a
//! valid request to opt out of the *sale* and the *sharing* of personal information. An
//! event captured with `gpc = true` under one of [`GPC_OPT_OUT_JURISDICTIONS`] therefore
//! records the purposes [`GPC_SALE_PURPOSE`] and [`GPC_SHARING_PURPOSE`] as DENIED:
//! [`apply_gpc`] adds them when absent, and an event that would grant either is refused
//! (the person's signal wins over the banner's defaults). Elsewhere (e.g. `EU`) the GPC
//! flag is recorded as evidence and changes no purpose.

use super::event::{Choice, ConsentEvent};
use super::validate::InvalidEvent;

/// Purpose recording the opt-out of the sale of personal information.
pub const GPC_SALE_PURPOSE: &str = "sale";
/// Purpose recording the opt-out of sharing (cross-context behavioural advertising).
pub const GPC_SHARING_PURPOSE: &str = "sharing";

/// Jurisdiction codes under which GPC is an opt-out of sale and sharing: California (CCPA
/// as amended by the CPRA) and the US states whose laws require honouring it.
pub const GPC_OPT_OUT_JURISDICTIONS: &[&str] = &[
    "CCPA", "CPRA", "US-CA", "US-CO", "US-CT", "US-DE", "US-MD", "US-MN", "US-MT", "US-NH",
    "US-NJ", "US-OR", "US-TX",
];

/// Whether `event`'s GPC signal is an opt-out of sale and sharing.
pub fn gpc_opts_out(event: &ConsentEvent) -> bool {
    event.gpc && GPC_OPT_OUT_JURISDICTIONS.contains(&event.jurisdiction.as_str())
}

/// Adds the DENIED sale and sharing purposes a GPC opt-out implies; refuses an event that
/// grants either. Events without the signal, or outside those jurisdictions, are unchanged.
pub fn apply_gpc(event: &mut ConsentEvent) -> Result<(), InvalidEvent> {
    if !gpc_opts_out(event) {
        return Ok(());
    }
    for purpose in [GPC_SALE_PURPOSE, GPC_SHARING_PURPOSE] {
        match event.purposes.get(purpose) {
            Some(Choice::Granted) => return Err(conflict(event, purpose)),
            Some(Choice::Denied) => {}
            None => {
                event.purposes.insert(purpose.to_string(), Choice::Denied);
            }
        }
    }
    Ok(())
}

/// The rule [`apply_gpc`] establishes, checked before an event is stored.
pub(crate) fn check_gpc(event: &ConsentEvent) -> Result<(), InvalidEvent> {
    if !gpc_opts_out(event) {
        return Ok(());
    }
    for purpose in [GPC_SALE_PURPOSE, GPC_SHARING_PURPOSE] {
        if event.purposes.get(purpose) != Some(&Choice::Denied) {
            return Err(conflict(event, purpose));
        }
    }
    Ok(())
}

fn conflict(event: &ConsentEvent, purpose: &str) -> InvalidEvent {
    InvalidEvent {
        field: "purposes",
        rule: format!(
            "a GPC signal under {} is an opt-out of sale and sharing: {purpose:?} must be DENIED or left out (it is then recorded as DENIED)",
            event.jurisdiction
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(jurisdiction: &str, gpc: bool) -> ConsentEvent {
        let mut e = crate::format::tests_support::sample();
        e.jurisdiction = jurisdiction.into();
        e.gpc = gpc;
        e
    }

    #[test]
    fn gpc_under_ccpa_records_sale_and_sharing_denied_and_refuses_a_grant() {
        let mut e = event("US-CA", true);
        apply_gpc(&mut e).unwrap();
        assert_eq!(e.purposes.get("sale"), Some(&Choice::Denied));
        assert_eq!(e.purposes.get("sharing"), Some(&Choice::Denied));
        assert!(check_gpc(&e).is_ok());
        let mut granting = event("US-CA", true);
        granting.purposes.insert("sale".into(), Choice::Granted);
        assert!(apply_gpc(&mut granting).is_err());
        assert!(check_gpc(&granting).is_err());
        assert!(
            check_gpc(&event("CPRA", true)).is_err(),
            "not applied: refused"
        );
    }

    #[test]
    fn gpc_elsewhere_or_absent_changes_nothing() {
        for (j, gpc) in [("EU", true), ("US-CA", false)] {
            let mut e = event(j, gpc);
            let before = e.clone();
            apply_gpc(&mut e).unwrap();
            assert_eq!(e, before);
            assert!(check_gpc(&e).is_ok());
        }
    }
}
