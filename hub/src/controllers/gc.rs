//! The garbage collector's decision (background cascading deletion): an object whose
//! every owner reference names an object that no longer exists is deleted.
//!
//! An object with at least one live owner is kept as is; Skiff does not strip the dead
//! references from it.

use skiff_api::{Kind, Object, ObjectKey};

use crate::store::Store;

/// Whether `obj` has owner references and none of them names a live object. Owners are
/// looked up in the store (by kind, the dependent's namespace and name) and must carry
/// the referenced uid: a new object under the old name is not the owner.
pub(crate) fn orphaned(store: &dyn Store, obj: &Object) -> bool {
    let refs = &obj.meta().owner_references;
    !refs.is_empty()
        && refs.iter().all(|r| {
            let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == r.kind) else {
                // An owner of a kind Skiff does not store can never be found; keep the
                // object rather than guess.
                return false;
            };
            let ns = if kind.namespaced() {
                obj.meta().namespace_or_empty()
            } else {
                ""
            };
            store
                .get(&ObjectKey::new(kind, ns, r.name.clone()))
                .is_none_or(|owner| owner.meta().uid.as_ref() != Some(&r.uid))
        })
}
