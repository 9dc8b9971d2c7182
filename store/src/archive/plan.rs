//! What `load` makes of one archive entry, whichever layout it came in: an image verified and
//! ready to be recorded, with its tags as the index records them.

use crate::images::NewImage;
use crate::reference::Reference;

/// An image verified and ready to be recorded in the index.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub image: NewImage,
    pub tags: Vec<Reference>,
}

/// A tag as the index records it: full, with `:latest` when the archive gave none; digests are
/// dropped (an index entry names a tag, and the manifest digest may differ after conversion).
pub(super) fn normalize_tag(r: &Reference) -> Option<Reference> {
    match (r.tag(), r.digest()) {
        (_, None) => Some(r.with_default_tag()),
        (Some(tag), Some(_)) => r.name_only().with_tag(tag).ok(),
        (None, Some(_)) => None,
    }
}
