//! A workload's capability sets derived from the classes of its checks: the one derivation
//! `record` (through [`super::WorkloadProfile::build`]), `merge` and the cluster view use, so
//! that merging a profile never changes it.
//!
//! What is in the set: every capability needed, conditional or optional (a missing capability
//! breaks the workload, an extra one only fails to protect it; a re-run takes the doubtful ones
//! out). `conditional` and `optional` list the doubtful ones that no certain need covers;
//! `would_need` the refused ones outside the set.

use crate::capability::{CapSet, Capability};

/// Capabilities by what their checks say, before the sets are derived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassSets {
    /// Granted and acted on, or added on purpose (`--portable`, a proof by re-run).
    pub certain: CapSet,
    /// Granted where the program may tolerate a refusal.
    pub conditional: CapSet,
    /// Granted where many programs fall back quietly.
    pub optional: CapSet,
    /// Refused.
    pub refused: CapSet,
}

/// The sets a profile carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DerivedSets {
    pub add: Vec<Capability>,
    pub conditional: Vec<Capability>,
    pub optional: Vec<Capability>,
    pub would_need: Vec<Capability>,
}

impl ClassSets {
    /// The classes a profile's sets stand for: what is in the set and neither conditional nor
    /// optional is certain.
    pub fn of(add: &[Capability], conditional: &[Capability], optional: &[Capability], would_need: &[Capability]) -> Self {
        let set = |caps: &[Capability]| caps.iter().copied().collect::<CapSet>();
        let (add, conditional, optional) = (set(add), set(conditional), set(optional));
        Self { certain: CapSet(add.0 & !(conditional.0 | optional.0)), conditional, optional, refused: set(would_need) }
    }

    /// Both inputs' evidence: certain where either is certain.
    pub fn union(self, other: Self) -> Self {
        Self {
            certain: CapSet(self.certain.0 | other.certain.0),
            conditional: CapSet(self.conditional.0 | other.conditional.0),
            optional: CapSet(self.optional.0 | other.optional.0),
            refused: CapSet(self.refused.0 | other.refused.0),
        }
    }

    pub fn derive(self) -> DerivedSets {
        let conditional = CapSet(self.conditional.0 & !self.certain.0);
        let optional = CapSet(self.optional.0 & !self.certain.0 & !conditional.0);
        let add = CapSet(self.certain.0 | conditional.0 | optional.0);
        DerivedSets { add: sorted(add), conditional: sorted(conditional), optional: sorted(optional), would_need: sorted(CapSet(self.refused.0 & !add.0)) }
    }
}

/// By name, as every output lists them.
pub fn sorted(set: CapSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.iter().collect();
    v.sort_by_key(|c| c.name());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability as C;

    fn sets(certain: &[C], conditional: &[C], optional: &[C], refused: &[C]) -> ClassSets {
        let s = |v: &[C]| v.iter().copied().collect();
        ClassSets { certain: s(certain), conditional: s(conditional), optional: s(optional), refused: s(refused) }
    }

    #[test]
    fn doubtful_capabilities_stay_in_the_set() {
        let d = sets(&[C::SETUID], &[C::CHOWN, C::SETUID], &[C::SYS_NICE], &[C::NET_ADMIN, C::CHOWN]).derive();
        assert_eq!(d.add, [C::CHOWN, C::SETUID, C::SYS_NICE]);
        assert_eq!(d.conditional, [C::CHOWN]);
        assert_eq!(d.optional, [C::SYS_NICE]);
        assert_eq!(d.would_need, [C::NET_ADMIN]);
    }

    #[test]
    fn a_profiles_sets_give_back_the_same_sets() {
        let d = sets(&[C::SETUID, C::KILL], &[C::CHOWN], &[C::SYS_NICE, C::CHOWN], &[C::NET_ADMIN]).derive();
        let again = ClassSets::of(&d.add, &d.conditional, &d.optional, &d.would_need);
        assert_eq!(again.derive(), d);
        assert_eq!(again.union(again).derive(), d, "merged with itself");
        assert_eq!(again.union(ClassSets::default()).derive(), d, "merged with nothing");
    }

    #[test]
    fn a_certain_need_anywhere_settles_a_doubt_elsewhere() {
        let a = sets(&[], &[C::CHOWN], &[], &[]);
        let b = sets(&[C::CHOWN], &[], &[], &[]);
        let d = a.union(b).derive();
        assert_eq!((d.add, d.conditional), (vec![C::CHOWN], vec![]));
    }
}
