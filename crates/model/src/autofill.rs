//! A key's `options.writes.autofill`, typed: the properties stamped onto every event the key writes, the
//! add-ons it runs on them (`keen.addons`), and the one rule that keeps a tenant's stamp intact — nothing
//! else that shapes an event may write, replace or remove an autofilled path.
//!
//! Design: the autofill is parsed once, when the key is saved or loaded ([`Autofill::parse`]), into its
//! properties, its add-ons and the list of its leaf paths (a leaf is a value that is not a non-empty
//! object: `{"site": {"id": "acme"}}` has the one leaf `site.id`). A path *touches* a leaf when it is the
//! leaf, one of its ancestors (`site`) or one of its descendants (`site.id.x`); writing or removing at such
//! a path could replace, remove or re-attribute the stamp. Event properties cannot: [`Autofill::stamp`]
//! drops every property of the event that touches a leaf and adds the key's, so at every leaf and along the
//! way to it the key's value wins (the flattened form of merging the key's object over the event's).
//! Add-on outputs and the input an add-on removes (`remove_ip_property`) are checked by
//! [`Autofill::check_addon`] before any add-on runs, and an event with one that touches a leaf is refused
//! naming both paths. The key's own add-ons go through the same check when the key is saved. A sibling of
//! a leaf (`site.name` next to `site.id`) is not touched and may be written.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::addons::{AddonSpec, parse_addons};
use crate::event::{EventContext, EventError, validate_event_object};
use crate::flat::{FlatValue, flatten_properties};
use crate::flat_edit::is_at_or_under;
use crate::key_options::{KeyDefinitionError, invalid};

/// `options.writes.autofill`.
#[derive(Clone, Debug, PartialEq)]
pub struct Autofill {
    /// The autofill object as the key holds it (with `keen.addons`): what the uniqueness scope digests.
    source: Map<String, Value>,
    /// The key's add-ons, run after the event's own.
    addons: Arc<[AddonSpec]>,
    /// The properties flattened: what the stamp adds to an event; their paths are the autofilled leaves.
    flat: Vec<(String, FlatValue)>,
}

impl Autofill {
    /// Parses and checks an autofill object: its properties obey the rules of an event's (names, strings,
    /// lists of primitives, nesting within the event depth limit), `keen` holds nothing but `addons`, and
    /// no add-on of the key touches its own leaves.
    pub fn parse(value: &Value) -> Result<Autofill, KeyDefinitionError> {
        let Value::Object(source) = value else {
            return Err(invalid("options.writes.autofill must be an object."));
        };
        let mut properties = source.clone();
        let addons: Arc<[AddonSpec]> = match properties.remove("keen") {
            None => Arc::from([]),
            Some(keen) => {
                let addons_only = keen
                    .as_object()
                    .is_some_and(|keen| keen.len() == 1 && keen.contains_key("addons"));
                if !addons_only {
                    return Err(invalid(
                        "options.writes.autofill cannot set keen.* properties other than keen.addons.",
                    ));
                }
                parse_addons(&keen["addons"])
                    .map_err(|error| {
                        invalid(format!("options.writes.autofill.keen.addons: {error}"))
                    })?
                    .into()
            }
        };
        validate_event_object(&properties)
            .map_err(|error| invalid(format!("options.writes.autofill: {error}")))?;
        let flat = flatten_properties(properties);
        let autofill = Autofill {
            source: source.clone(),
            addons,
            flat,
        };
        for spec in autofill.addons.iter() {
            autofill.check_addon(spec).map_err(|error| {
                invalid(format!("options.writes.autofill.keen.addons: {error}"))
            })?;
        }
        Ok(autofill)
    }

    /// The autofill object as given, `keen.addons` included.
    pub fn source(&self) -> &Map<String, Value> {
        &self.source
    }

    /// The key's add-ons, run on every event it writes after the event's own.
    pub fn addons(&self) -> &Arc<[AddonSpec]> {
        &self.addons
    }

    /// The dotted paths the key fills.
    pub fn leaves(&self) -> impl Iterator<Item = &str> + '_ {
        self.flat.iter().map(|(path, _)| path.as_str())
    }

    /// Stamps the key's properties onto an event's flattened properties: whatever of the event touches an
    /// autofilled path is dropped and the key's values are added, `${keen.ip}` and `${keen.user_agent}`
    /// filled in from the request as in an event's own values.
    pub fn stamp(&self, properties: &mut Vec<(String, FlatValue)>, context: &EventContext) {
        properties.retain(|(path, _)| self.touched_by(path).is_none());
        properties.extend(self.flat.iter().map(|(path, value)| {
            let value = match value {
                FlatValue::Str(text) => match context.placeholder(text) {
                    Some(filled) => filled.map_or(FlatValue::Null, FlatValue::Str),
                    None => value.clone(),
                },
                _ => value.clone(),
            };
            (path.clone(), value)
        }));
    }

    /// The autofilled leaf that writing or removing at `path` would touch (see the module docs).
    pub(crate) fn touched_by(&self, path: &str) -> Option<&str> {
        self.leaves().find(|leaf| touches(path, leaf))
    }

    /// Refuses an add-on whose output, or the input it removes, touches an autofilled path.
    pub(crate) fn check_addon(&self, spec: &AddonSpec) -> Result<(), EventError> {
        let mut written = vec![("output", spec.output.as_str())];
        if spec.remove_input
            && let Some((_, input)) = spec.input.first()
        {
            written.push(("removed input", input.as_str()));
        }
        for (role, path) in written {
            if let Some(leaf) = self.touched_by(path) {
                return Err(EventError::InvalidKeenNamespaceProperty(format!(
                    "{}'s {role} '{path}' would change '{leaf}', which this key fills for every event it writes; choose another path.",
                    spec.kind.name()
                )));
            }
        }
        Ok(())
    }
}

/// Whether writing at `path` can change the value at `leaf`: the same path, an ancestor or a descendant.
fn touches(path: &str, leaf: &str) -> bool {
    is_at_or_under(path, leaf) || is_at_or_under(leaf, path)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn autofill(value: Value) -> Autofill {
        Autofill::parse(&value).unwrap()
    }

    #[test]
    fn leaves_and_what_touches_them() {
        let fill = autofill(json!({"site": {"id": "acme", "tier": {}}, "tenant": "a"}));
        assert_eq!(
            fill.leaves().collect::<Vec<_>>(),
            ["site.id", "site.tier", "tenant"]
        );
        for path in [
            "site",
            "site.id",
            "site.id.x",
            "tenant",
            "tenant.sub",
            "site.tier.x",
        ] {
            assert!(fill.touched_by(path).is_some(), "{path}");
        }
        for path in ["site.name", "sites", "site_id", "tenants", "other.site.id"] {
            assert_eq!(fill.touched_by(path), None, "{path}");
        }
    }

    #[test]
    fn the_key_wins_at_every_leaf_and_on_the_way_to_it() {
        let fill = autofill(
            json!({"vendor_id": "acme", "vendor": {"tier": "gold"}, "empty": {}, "ip": "${keen.ip}"}),
        );
        let context = EventContext {
            received_at: chrono::Utc::now(),
            client_ip: Some("10.0.0.1".into()),
            user_agent: None,
            uniqueness_scope: None,
            autofill: None,
        };
        let sorted = |mut properties: Vec<(String, FlatValue)>| {
            properties.sort_by(|left, right| crate::flat_edit::path_order(&left.0, &right.0));
            properties
        };
        let stamped = |event: Value| {
            let mut properties = flatten_properties(event.as_object().cloned().unwrap());
            fill.stamp(&mut properties, &context);
            sorted(properties)
        };
        let expected =
            |event: Value| sorted(flatten_properties(event.as_object().cloned().unwrap()));
        assert_eq!(
            stamped(
                json!({"vendor_id": "globex", "vendor": {"tier": "free", "name": "x"}, "empty": {"a": 1}, "n": 1})
            ),
            expected(
                json!({"vendor_id": "acme", "vendor": {"tier": "gold", "name": "x"}, "empty": {}, "n": 1, "ip": "10.0.0.1"})
            )
        );
        assert_eq!(
            stamped(json!({"vendor": "flat"})),
            expected(
                json!({"vendor_id": "acme", "vendor": {"tier": "gold"}, "empty": {}, "ip": "10.0.0.1"})
            )
        );
    }

    #[test]
    fn definitions_are_checked() {
        for bad in [
            json!({"keen": {"timestamp": "x"}}),
            json!({"a.b": 1}),
            json!({"x": [{"a": 1}]}),
            json!({"s": "x".repeat(10_000)}),
            json!({"$a": 1}),
            json!({"site": {"id": "acme"}, "keen": {"addons": [
                {"name": "keen:url_parser", "input": {"url": "u"}, "output": "site"}]}}),
            json!({"ip": "1.2.3.4", "keen": {"addons": [
                {"name": "keen:ip_to_geo", "input": {"ip": "ip", "remove_ip_property": true}, "output": "geo"}]}}),
        ] {
            assert!(Autofill::parse(&bad).is_err(), "{bad}");
        }
        let mut deep = json!(1);
        for _ in 0..crate::event::MAX_EVENT_DEPTH {
            deep = json!({ "d": deep });
        }
        assert!(Autofill::parse(&deep).is_ok(), "at the event depth limit");
        assert!(Autofill::parse(&json!({ "d": deep })).is_err());
        let fill = autofill(json!({"site": {"id": "acme"}, "keen": {"addons": [
            {"name": "keen:url_parser", "input": {"url": "u"}, "output": "site.info"}]}}));
        assert_eq!(fill.addons().len(), 1);
        assert!(fill.source().contains_key("keen"));
    }
}
