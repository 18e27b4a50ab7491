//! Every setting of `keyhole serve`, declared once: its name (the command-line option `--name-with-dashes`
//! and the TOML key `name`), its type, its `KEYHOLE_*` environment variable, its default and its help.
//! [`declare_settings!`] derives from that one declaration the clap arguments (command line and
//! environment), the reading of the TOML file, the defaults, and [`markdown`], the documented list
//! (`docs/settings.md`, which a test keeps equal to it).
//!
//! Design: a setting's value comes from the command line, else its environment variable (both clap's),
//! else the file, else its default. A default that depends on the machine or on another setting is
//! declared `None` with the words that describe it (`shown`), and computed where it is used.

use std::path::{Path, PathBuf};

/// What the documentation says of one setting.
pub struct SettingDoc {
    pub name: &'static str,
    pub env: &'static str,
    pub help: &'static [&'static str],
    pub default: fn() -> String,
}

/// A type a setting may have: parsed from the command line and the environment (`FromStr`, by clap)
/// and from a TOML value.
pub trait SettingValue: Sized {
    fn from_toml(value: &toml::Value) -> Result<Self, String>;
    fn describe(&self) -> String;
}

impl SettingValue for String {
    fn from_toml(value: &toml::Value) -> Result<String, String> {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "expected a string".to_string())
    }
    fn describe(&self) -> String {
        self.clone()
    }
}

impl SettingValue for PathBuf {
    fn from_toml(value: &toml::Value) -> Result<PathBuf, String> {
        String::from_toml(value).map(PathBuf::from)
    }
    fn describe(&self) -> String {
        self.display().to_string()
    }
}

macro_rules! whole_number_settings {
    ($($number:ty),*) => {$(
        impl SettingValue for $number {
            fn from_toml(value: &toml::Value) -> Result<$number, String> {
                value
                    .as_integer()
                    .and_then(|number| <$number>::try_from(number).ok())
                    .ok_or_else(|| "expected a whole number of at least 0".to_string())
            }
            fn describe(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

whole_number_settings!(u64, usize);

/// A size in bytes: a number of bytes, or text with a unit (`2GiB`, `512MiB`; see
/// `model::memory_budget::parse_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(text: &str) -> Result<Size, String> {
        keyhole_model::memory_budget::parse_size(text).map(Size)
    }
}

impl SettingValue for Size {
    fn from_toml(value: &toml::Value) -> Result<Size, String> {
        match value {
            toml::Value::Integer(bytes) => u64::try_from(*bytes)
                .map(Size)
                .map_err(|_| "expected a size of at least 0".to_string()),
            toml::Value::String(text) => text.parse(),
            _ => Err("expected bytes (a number) or a size with a unit (\"2GiB\")".to_string()),
        }
    }
    fn describe(&self) -> String {
        format!("{} bytes", self.0)
    }
}

/// A setting's help as the command line shows it: its documentation and its default.
pub fn help_text(lines: &[&str], default: &str) -> String {
    let text = lines
        .iter()
        .map(|line| line.trim())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{text} [default: {default}]")
}

/// How a default reads: the declared words for a computed one, else the value.
pub fn describe_default<T: SettingValue>(value: Option<T>, shown: Option<&str>) -> String {
    match (shown, value) {
        (Some(shown), _) => shown.to_string(),
        (None, Some(value)) => value.describe(),
        (None, None) => "none".to_string(),
    }
}

/// Declares a group of settings: a clap `Args` struct of `Option`s (`None`: not on the command line nor
/// in the environment), a getter per setting that applies its default, the reading of the group's keys
/// from the TOML file, and the group's [`SettingDoc`]s.
///
/// ```text
/// /// Help (one or more doc lines)
/// name: Type = default_expression (an Option<Type>), env "KEYHOLE_NAME" [, shown "words"] [, secret true];
/// ```
macro_rules! declare_settings {
    (
        $(#[$struct_meta:meta])*
        pub struct $group:ident (global = $global:literal) {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr , env $env:literal
                    $(, shown $shown:literal)? $(, secret $secret:literal)? ;
            )*
        }
    ) => {
        $(#[$struct_meta])*
        #[derive(clap::Args, Debug, Clone, Default)]
        pub struct $group {
            $(
                #[arg(
                    long,
                    env = $env,
                    global = $global,
                    help = $crate::settings::help_text(
                        &[$($doc),*],
                        &$crate::settings::describe_default::<$ty>(
                            $default,
                            declare_settings!(@shown $($shown)?),
                        ),
                    ),
                    hide_env_values = declare_settings!(@secret $($secret)?),
                )]
                pub $field: Option<$ty>,
            )*
        }

        #[allow(dead_code)]
        impl $group {
            /// What the documentation says of each setting of the group.
            pub const DOCS: &'static [$crate::settings::SettingDoc] = &[$(
                $crate::settings::SettingDoc {
                    name: stringify!($field),
                    env: $env,
                    help: &[$($doc),*],
                    default: || $crate::settings::describe_default::<$ty>(
                        $default,
                        declare_settings!(@shown $($shown)?),
                    ),
                },
            )*];

            /// Each setting not given on the command line or in the environment, from the file's
            /// table; the keys taken are removed from it.
            pub fn take_from_file(
                &mut self,
                table: &mut toml::Table,
                file: &std::path::Path,
            ) -> anyhow::Result<()> {
                $(
                    if let Some(value) = table.remove(stringify!($field)) {
                        let parsed = <$ty as $crate::settings::SettingValue>::from_toml(&value)
                            .map_err(|problem| anyhow::anyhow!(
                                "{} in the config file {}: {problem}",
                                stringify!($field),
                                file.display()
                            ))?;
                        self.$field.get_or_insert(parsed);
                    }
                )*
                Ok(())
            }

            $(
                /// The setting's value with its default applied (`None`: computed where it is used).
                pub fn $field(&self) -> Option<$ty> {
                    self.$field.clone().or_else(|| $default)
                }
            )*
        }
    };
    (@shown) => { None };
    (@shown $shown:literal) => { Some($shown) };
    (@secret) => { false };
    (@secret $secret:literal) => { $secret };
}

pub(crate) use declare_settings;

/// Reads the TOML file at `path` (none: an empty table).
pub fn read_file(path: Option<&Path>) -> anyhow::Result<toml::Table> {
    let Some(path) = path else {
        return Ok(toml::Table::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read config file {}: {error}", path.display()))?;
    toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("invalid config file {}: {error}", path.display()))
}

/// Refuses keys of the file no setting took.
pub fn refuse_unknown_keys(
    table: &toml::Table,
    path: &Path,
    groups: &[&[SettingDoc]],
) -> anyhow::Result<()> {
    let Some(unknown) = table.keys().next() else {
        return Ok(());
    };
    let known: Vec<&str> = groups
        .iter()
        .flat_map(|docs| docs.iter().map(|doc| doc.name))
        .collect();
    anyhow::bail!(
        "invalid config file {}: unknown setting `{unknown}`; the settings are {}",
        path.display(),
        known.join(", ")
    )
}

/// The documented list of settings (`docs/settings.md`), group by group.
pub fn markdown(groups: &[(&str, &[SettingDoc])]) -> String {
    let mut text = String::from(
        "# Settings\n\n\
         Generated from the declarations in `crates/keyhole/src/config.rs` (a test keeps this file equal to \
         them: `KEYHOLE_WRITE_DOCS=1 cargo test -p keyhole settings_docs` rewrites it).\n\n\
         Each setting is a command-line option of `keyhole serve` (`--name-with-dashes`), an environment \
         variable, and a key of the TOML file given with `--config` / `KEYHOLE_CONFIG`. The command line \
         wins over the environment, which wins over the file, which wins over the default.\n",
    );
    for (title, docs) in groups {
        text.push_str(&format!(
            "\n## {title}\n\n| TOML key / `--option` | environment | default | what |\n|---|---|---|---|\n"
        ));
        for doc in *docs {
            let help = doc
                .help
                .iter()
                .map(|line| line.trim())
                .collect::<Vec<_>>()
                .join(" ");
            text.push_str(&format!(
                "| `{}` / `--{}` | `{}` | {} | {} |\n",
                doc.name,
                doc.name.replace('_', "-"),
                doc.env,
                (doc.default)(),
                help.replace('|', "\\|")
            ));
        }
    }
    text
}
