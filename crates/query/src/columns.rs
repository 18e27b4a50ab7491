//! Which physical columns hold a property path (see the storage's type-drift layout: one column per
//! (path, kind), plus fixed `keen.timestamp`, `keen.created_at`, `keen.id`), and unqualified column
//! references (paths contain dots, which DataFusion would otherwise read as table qualifiers).

use arrow::datatypes::Schema;
use datafusion::common::Column;
use datafusion::prelude::Expr;
use keyhole_model::ValueKind;
use keyhole_model::flat::{CREATED_AT_COLUMN, ID_COLUMN, TIMESTAMP_COLUMN};

/// A column reference by exact name.
pub(crate) fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Where a property's values live.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PropertyColumns {
    /// `keen.timestamp` or `keen.created_at`: one millisecond timestamp column.
    Time(String),
    /// `keen.id`: one text column.
    Id,
    /// Any other path: its typed columns present in the collection.
    Typed(Vec<(ValueKind, String)>),
}

impl PropertyColumns {
    pub(crate) fn of(schema: &Schema, path: &str) -> PropertyColumns {
        match path {
            TIMESTAMP_COLUMN | CREATED_AT_COLUMN => return PropertyColumns::Time(path.to_string()),
            ID_COLUMN => return PropertyColumns::Id,
            _ => {}
        }
        let typed = ValueKind::ALL
            .into_iter()
            .map(|kind| (kind, kind.column_name(path)))
            .filter(|(_, name)| schema.field_with_name(name).is_ok())
            .collect();
        PropertyColumns::Typed(typed)
    }

    /// The column of one kind, if the collection has it.
    pub(crate) fn typed(&self, kind: ValueKind) -> Option<Expr> {
        match self {
            PropertyColumns::Typed(columns) => columns
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, name)| column(name)),
            PropertyColumns::Id if kind == ValueKind::Str => Some(column(ID_COLUMN)),
            _ => None,
        }
    }

    /// Every column that can hold a value of this property.
    pub(crate) fn all(&self) -> Vec<(ValueKind, Expr)> {
        match self {
            PropertyColumns::Time(name) => vec![(ValueKind::Str, column(name))],
            PropertyColumns::Id => vec![(ValueKind::Str, column(ID_COLUMN))],
            PropertyColumns::Typed(columns) => columns
                .iter()
                .map(|(kind, name)| (*kind, column(name)))
                .collect(),
        }
    }
}
