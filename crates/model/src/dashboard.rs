//! Dashboard definitions (a Keyhole extension, `PUT /3.0/projects/{p}/dashboards/{name}`): a title, tiles
//! on a 12-column grid, optional controls for the viewer, and a theme — everything the embed page and the
//! `<keyhole-dashboard>` component need to draw a dashboard, and nothing they would run unchecked.
//!
//! ```json
//! {"title": "Orders",
//!  "tiles": [{"title": "Revenue", "chart": "metric", "width": 4,
//!             "query": {"analysis_type": "sum", "event_collection": "orders", "target_property": "amount",
//!                       "timeframe": "this_30_days"}},
//!            {"title": "Daily", "chart": "line", "width": 8, "saved_query": "daily-orders"}],
//!  "controls": {"timeframes": ["this_7_days", "this_30_days"], "intervals": ["daily", "weekly"]},
//!  "theme": {"font": "Georgia, serif", "color": "#1d2433", "background": "#ffffff", "accent": "#0b6bcb"}}
//! ```
//!
//! Design: a tile's inline query is parsed by the query parser itself (`saved_query::parse_saved_query`),
//! so a definition that was accepted runs; a saved-query tile names one that must exist when the definition
//! is saved (the server checks, this module cannot). Controls are offered only as the listed values, each
//! parsed as a timeframe or an interval here, so a viewer can only choose among values that were checked.
//! Theme values are CSS values limited to characters that cannot leave a declaration (no `;`, braces,
//! quotes other than in font names, `<`, `\`), since they are written into a style attribute.

use serde_json::{Map, Value, json};

use crate::key_options::{KeyDefinitionError, invalid};
use crate::query::{AnalysisType, Query};
use crate::saved_query::{is_saved_query_name, parse_saved_query};

/// Most tiles in one dashboard.
pub const MAX_TILES: usize = 24;
/// Most values in one control's list.
const MAX_CONTROL_VALUES: usize = 12;
/// Longest title (dashboard or tile), in characters.
const MAX_TITLE_CHARS: usize = 200;
/// Longest theme value, in characters.
const MAX_THEME_VALUE_CHARS: usize = 200;
/// The chart types a tile may have.
pub const CHART_TYPES: [&str; 7] = ["metric", "line", "area", "bar", "pie", "table", "funnel"];
/// The theme's fields (each a CSS value, applied as a custom property `--keyhole-<field>`).
pub const THEME_FIELDS: [&str; 5] = ["font", "color", "background", "accent", "tile_background"];

/// A validated dashboard definition, with the JSON it is stored and served as.
#[derive(Clone, Debug, PartialEq)]
pub struct DashboardDefinition {
    /// The saved queries its tiles name (each must exist when the definition is saved).
    pub saved_queries: Vec<String>,
    /// The definition as stored: every field present, in the documented shape.
    pub json: Value,
}

/// Whether `name` can name a dashboard (the characters of saved query names).
pub fn is_dashboard_name(name: &str) -> bool {
    is_saved_query_name(name)
}

fn title(value: Option<&Value>, what: &str) -> Result<String, KeyDefinitionError> {
    match value {
        Some(Value::String(text))
            if !text.trim().is_empty() && text.chars().count() <= MAX_TITLE_CHARS =>
        {
            Ok(text.clone())
        }
        _ => Err(invalid(format!(
            "{what} needs a title: a non-empty string of at most {MAX_TITLE_CHARS} characters."
        ))),
    }
}

fn refuse_unknown(
    object: &Map<String, Value>,
    fields: &[&str],
    what: &str,
) -> Result<(), KeyDefinitionError> {
    match object
        .keys()
        .find(|field| !fields.contains(&field.as_str()))
    {
        Some(unknown) => Err(invalid(format!(
            "{} is not a field of {what}; its fields are {}.",
            unknown.chars().take(100).collect::<String>(),
            fields.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Parses one tile (`index` counts from 1 in messages).
fn parse_tile(index: usize, value: &Value) -> Result<(Value, Option<String>), KeyDefinitionError> {
    let what = format!("tile {index}");
    let object = value
        .as_object()
        .ok_or_else(|| invalid(format!("{what} must be a JSON object.")))?;
    refuse_unknown(
        object,
        &["title", "chart", "width", "query", "saved_query"],
        &what,
    )?;
    let tile_title = title(object.get("title"), &what)?;
    let chart = match object.get("chart").and_then(Value::as_str) {
        Some(chart) if CHART_TYPES.contains(&chart) => chart,
        _ => {
            return Err(invalid(format!(
                "{what} needs a chart: one of {}.",
                CHART_TYPES.join(", ")
            )));
        }
    };
    let width = match object.get("width") {
        None => 12,
        Some(width) => width
            .as_u64()
            .filter(|width| (1..=12).contains(width))
            .ok_or_else(|| {
                invalid(format!(
                    "{what}'s width is a whole number of columns from 1 to 12."
                ))
            })?,
    };
    let (source, saved) = match (object.get("query"), object.get("saved_query")) {
        (Some(Value::Object(query)), None) => {
            let parsed = parse_saved_query(query)
                .map_err(|error| invalid(format!("{what}: {}", error.0)))?;
            if (chart == "funnel") != (parsed.analysis == AnalysisType::Funnel) {
                return Err(invalid(format!(
                    "{what}: a funnel chart draws a funnel query, and a funnel query needs the funnel chart."
                )));
            }
            (json!({"query": query}), None)
        }
        (None, Some(Value::String(name))) if is_saved_query_name(name) => {
            (json!({"saved_query": name}), Some(name.clone()))
        }
        _ => {
            return Err(invalid(format!(
                "{what} needs either a query (an object with analysis_type) or a saved_query (a saved query's name), not both."
            )));
        }
    };
    let mut tile = json!({"title": tile_title, "chart": chart, "width": width});
    tile.as_object_mut()
        .expect("an object")
        .extend(source.as_object().expect("an object").clone());
    Ok((tile, saved))
}

/// Parses `controls`: `timeframes` and `intervals`, each a list of values a query accepts.
fn parse_controls(value: Option<&Value>) -> Result<Value, KeyDefinitionError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(json!({"timeframes": [], "intervals": []}));
    };
    let object = value
        .as_object()
        .ok_or_else(|| invalid("controls must be a JSON object."))?;
    refuse_unknown(object, &["timeframes", "intervals"], "controls")?;
    let list = |field: &str| -> Result<Vec<String>, KeyDefinitionError> {
        let Some(values) = object.get(field).filter(|value| !value.is_null()) else {
            return Ok(Vec::new());
        };
        let values = values
            .as_array()
            .filter(|values| values.len() <= MAX_CONTROL_VALUES)
            .ok_or_else(|| {
                invalid(format!(
                    "controls.{field} is a list of at most {MAX_CONTROL_VALUES} values."
                ))
            })?;
        values
            .iter()
            .map(|value| {
                let text = value
                    .as_str()
                    .ok_or_else(|| invalid(format!("controls.{field} holds strings.")))?;
                let mut params = Map::new();
                params.insert("event_collection".into(), json!("c"));
                params.insert(
                    "timeframe".into(),
                    json!(if field == "timeframes" {
                        text
                    } else {
                        "this_7_days"
                    }),
                );
                if field == "intervals" {
                    params.insert("interval".into(), json!(text));
                }
                Query::parse(AnalysisType::Count, &params)
                    .map_err(|error| invalid(format!("controls.{field}: {text:?}: {error}")))?;
                Ok(text.to_string())
            })
            .collect()
    };
    Ok(json!({"timeframes": list("timeframes")?, "intervals": list("intervals")?}))
}

/// Whether a theme value stays inside one CSS declaration.
fn is_safe_css_value(text: &str) -> bool {
    !text.is_empty()
        && text.chars().count() <= MAX_THEME_VALUE_CHARS
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    ' ' | '#' | '.' | ',' | '%' | '(' | ')' | '-' | '_' | '\''
                )
        })
        && !text.to_ascii_lowercase().contains("url(")
        && !text.to_ascii_lowercase().contains("expression(")
}

fn parse_theme(value: Option<&Value>) -> Result<Value, KeyDefinitionError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(json!({}));
    };
    let object = value
        .as_object()
        .ok_or_else(|| invalid("theme must be a JSON object."))?;
    refuse_unknown(object, &THEME_FIELDS, "theme")?;
    for (field, value) in object {
        if !value.as_str().is_some_and(is_safe_css_value) {
            return Err(invalid(format!(
                "theme.{field} is a CSS value of at most {MAX_THEME_VALUE_CHARS} characters: letters, digits, spaces and # . , % ( ) - _ ' (no url())."
            )));
        }
    }
    Ok(Value::Object(object.clone()))
}

impl DashboardDefinition {
    /// Parses a `PUT …/dashboards/{name}` body.
    pub fn parse(body: &Value) -> Result<DashboardDefinition, KeyDefinitionError> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("A dashboard must be a JSON object."))?;
        refuse_unknown(
            object,
            &["title", "tiles", "controls", "theme"],
            "a dashboard",
        )?;
        let dashboard_title = title(object.get("title"), "A dashboard")?;
        let tiles = object
            .get("tiles")
            .and_then(Value::as_array)
            .filter(|tiles| (1..=MAX_TILES).contains(&tiles.len()))
            .ok_or_else(|| {
                invalid(format!(
                    "A dashboard needs tiles: a list of 1 to {MAX_TILES}."
                ))
            })?;
        let mut parsed_tiles = Vec::with_capacity(tiles.len());
        let mut saved_queries = Vec::new();
        for (index, tile) in tiles.iter().enumerate() {
            let (tile, saved) = parse_tile(index + 1, tile)?;
            parsed_tiles.push(tile);
            saved_queries.extend(saved);
        }
        saved_queries.sort();
        saved_queries.dedup();
        Ok(DashboardDefinition {
            saved_queries,
            json: json!({
                "title": dashboard_title,
                "tiles": parsed_tiles,
                "controls": parse_controls(object.get("controls"))?,
                "theme": parse_theme(object.get("theme"))?,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<DashboardDefinition, KeyDefinitionError> {
        DashboardDefinition::parse(&body)
    }

    fn count_tile() -> Value {
        json!({"title": "Orders", "chart": "metric", "width": 4,
               "query": {"analysis_type": "count", "event_collection": "orders", "timeframe": "this_30_days"}})
    }

    #[test]
    fn a_definition_is_stored_in_its_full_shape() {
        let parsed = parse(json!({
            "title": "Shop",
            "tiles": [count_tile(), {"title": "Daily", "chart": "line", "saved_query": "daily"}],
            "controls": {"timeframes": ["this_7_days", "previous_30_days"], "intervals": ["daily", "every_2_hours"]},
            "theme": {"font": "'Inter', sans-serif", "accent": "#0b6bcb"},
        }))
        .unwrap();
        assert_eq!(parsed.saved_queries, ["daily"]);
        assert_eq!(
            parsed.json["tiles"][1],
            json!({"title": "Daily", "chart": "line", "width": 12, "saved_query": "daily"})
        );
        assert_eq!(
            parsed.json["controls"]["intervals"],
            json!(["daily", "every_2_hours"])
        );
        let bare = parse(json!({"title": "Shop", "tiles": [count_tile()]})).unwrap();
        assert_eq!(
            bare.json["controls"],
            json!({"timeframes": [], "intervals": []})
        );
        assert_eq!(bare.json["theme"], json!({}));
    }

    #[test]
    fn what_would_not_draw_or_run_is_refused() {
        let with_tile = |tile: Value| json!({"title": "Shop", "tiles": [tile]});
        let mut bad_chart = count_tile();
        bad_chart["chart"] = json!("sparkline");
        let mut bad_width = count_tile();
        bad_width["width"] = json!(13);
        let mut bad_query = count_tile();
        bad_query["query"]["analysis_type"] = json!("median-ish");
        let mut both = count_tile();
        both["saved_query"] = json!("daily");
        let mut funnel_chart = count_tile();
        funnel_chart["chart"] = json!("funnel");
        for body in [
            json!([]),
            json!({"tiles": [count_tile()]}),
            json!({"title": "Shop", "tiles": []}),
            json!({"title": "Shop", "tiles": [count_tile()], "layout": "grid"}),
            with_tile(bad_chart),
            with_tile(bad_width),
            with_tile(bad_query),
            with_tile(both),
            with_tile(funnel_chart),
            with_tile(json!({"title": "x", "chart": "line", "saved_query": "no spaces allowed"})),
            json!({"title": "Shop", "tiles": [count_tile()], "controls": {"timeframes": ["last tuesday"]}}),
            json!({"title": "Shop", "tiles": [count_tile()], "controls": {"intervals": ["fortnightly"]}}),
            json!({"title": "Shop", "tiles": [count_tile()], "theme": {"color": "red; background: url(x)"}}),
            json!({"title": "Shop", "tiles": [count_tile()], "theme": {"background": "url(https://x)"}}),
            json!({"title": "Shop", "tiles": [count_tile()], "theme": {"shadow": "none"}}),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
    }
}
