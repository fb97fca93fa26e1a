//! The tables' schema, one module each: the sort keys of every kind of item, the shapes of the items written by
//! hand (pointers), and the conditions that say an item is as it was read. Every table is keyed by `tenant_id`
//! and a sort key (`sk`), except payments (`tenant_id`, `sale_id`, no other item kind). The store methods
//! (`dynamo`, `activations`, `events`, `portal`, `signing`, `admin`) build their requests from these, with the
//! idioms of `sdk`; the tables themselves are defined in `template.yaml`.

pub(crate) mod events;
pub(crate) mod licenses;
pub(crate) mod tenants;
