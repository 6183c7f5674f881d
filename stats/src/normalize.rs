//! Normalization of free-form report strings into published labels, in one place for both
//! stores.
//!
//! Every rule here is data: a table of regular expressions, allowlists and bucket bounds. The
//! SQLite store registers each [`Function`] as an application-defined SQL function that
//! evaluates the table in Rust ([`Function::eval`]); the BigQuery store declares the same
//! function as a `CREATE TEMP FUNCTION` whose body is generated from the same table
//! ([`Function::bigquery`]). The patterns use only syntax that Rust's `regex` and RE2 read
//! alike (anchors, classes, groups, `?`, `{m,n}`), and a contract test runs both on one corpus.
//!
//! Normalization happens in SQL, before distinct counting: "Ubuntu 24.04.1 LTS" and
//! "Ubuntu 24.04.2 LTS" are one cell, counted once per cluster.
//!
//! Three rules are the wire contract's, not ours, so that the collector and the statistics read
//! a report alike: a Kubernetes version ([`report::version`]), a quantity ([`report::quantity`])
//! and the vendors whose resource names a volunteer sends ([`report::vocabulary`]). Rust
//! evaluates them by calling `report`; the BigQuery functions are their translation into
//! patterns, which tests run against `report` over the same inputs.
//!
//! What a label can be is closed: a fixed family name from these tables, digits and dots
//! captured by a pattern (a version), `other` (recognised as present but not on a list), or
//! `unknown` (the report did not say). No input text is ever copied out beyond those captures.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use report::quantity::{Quantity, SUFFIXES, Scale};
use report::version::GitVersion;

/// Label of a value that is present but not on the allowlist.
pub const OTHER: &str = "other";
/// Label of a value the report did not give.
pub const UNKNOWN: &str = "unknown";

/// One rule of a family table: inputs matching `pattern` belong to `family`; the pattern's
/// group 1, when it takes part in the match, is the version within the family.
#[derive(Debug, Clone, Copy)]
pub struct FamilyRule {
    /// Published family name.
    pub family: &'static str,
    /// Regular expression, anchored at the start; at most one capturing group (digits and dots).
    pub pattern: &'static str,
}

const fn rule(family: &'static str, pattern: &'static str) -> FamilyRule {
    FamilyRule { family, pattern }
}

/// Operating systems, from `nodes[].osImage` (first match wins). Versions are the release a
/// person would name: Ubuntu 24.04, Debian 12, Bottlerocket 1.20, Flatcar 3815.
pub const OS_RULES: &[FamilyRule] = &[
    rule("Ubuntu", r"^Ubuntu(?: ([0-9]+\.[0-9]+))?"),
    rule("Debian", r"^Debian GNU/Linux(?: ([0-9]+))?"),
    rule("Raspbian", r"^Raspbian GNU/Linux(?: ([0-9]+))?"),
    rule("COS", r"^Container-Optimized OS"),
    rule("Bottlerocket", r"^Bottlerocket OS(?: ([0-9]+\.[0-9]+))?"),
    rule("Amazon Linux", r"^Amazon Linux(?: ([0-9]+))?"),
    rule(
        "Flatcar",
        r"^Flatcar Container Linux(?: by Kinvolk)?(?: ([0-9]+))?",
    ),
    rule("Talos", r"^Talos(?: \(v([0-9]+\.[0-9]+))?"),
    rule("RHCOS", r"^Red Hat Enterprise Linux CoreOS(?: ([0-9]+))?"),
    rule(
        "RHEL",
        r"^Red Hat Enterprise Linux(?: Server)?(?: ([0-9]+))?",
    ),
    rule("CentOS Stream", r"^CentOS Stream(?: ([0-9]+))?"),
    rule("CentOS", r"^CentOS(?: Linux)?(?: ([0-9]+))?"),
    rule("Rocky Linux", r"^Rocky Linux(?: ([0-9]+))?"),
    rule("AlmaLinux", r"^AlmaLinux(?: ([0-9]+))?"),
    rule("Oracle Linux", r"^Oracle Linux(?: Server)?(?: ([0-9]+))?"),
    rule(
        "SLES",
        r"^SUSE Linux Enterprise Server(?: ([0-9]+(?: SP[0-9]+)?))?",
    ),
    rule(
        "SLE Micro",
        r"^SUSE Linux Enterprise Micro(?: ([0-9]+\.[0-9]+))?",
    ),
    rule("openSUSE", r"^openSUSE(?: Leap)?(?: ([0-9]+\.[0-9]+))?"),
    rule("Fedora CoreOS", r"^Fedora CoreOS(?: ([0-9]+))?"),
    rule("Fedora", r"^Fedora(?: Linux)?(?: ([0-9]+))?"),
    rule(
        "Azure Linux",
        r"^(?:CBL-Mariner|Microsoft Azure Linux|Azure Linux)(?:/Linux)?(?: ([0-9]+\.[0-9]+))?",
    ),
    rule("Alpine", r"^Alpine Linux(?: v([0-9]+\.[0-9]+))?"),
    rule("NixOS", r"^NixOS(?: ([0-9]+\.[0-9]+))?"),
    rule(
        "Photon OS",
        r"^VMware Photon OS(?:/Linux)?(?: ([0-9]+\.[0-9]+))?",
    ),
    rule("Garden Linux", r"^Garden Linux(?: ([0-9]+))?"),
    rule("Arch Linux", r"^Arch Linux"),
    rule("Windows Server", r"^Windows Server(?: ([0-9]{4}))?"),
];

/// Container runtimes, from `nodes[].containerRuntimeVersion` (`NAME://VERSION`); the version
/// is the minor release.
pub const RUNTIME_RULES: &[FamilyRule] = &[
    rule("containerd", r"^containerd://(?:v?([0-9]+\.[0-9]+))?"),
    rule("cri-o", r"^cri-o://(?:v?([0-9]+\.[0-9]+))?"),
    rule("docker", r"^docker://(?:v?([0-9]+\.[0-9]+))?"),
    rule("rkt", r"^rkt://(?:v?([0-9]+\.[0-9]+))?"),
];

/// Distribution flavors, recognised from the suffix of the API server's `gitVersion`. A plain
/// `vX.Y.Z` has none; any other suffix is `other`.
pub const DISTRIBUTION_RULES: &[FamilyRule] = &[
    rule("gke", r"^v?[0-9]+\.[0-9]+\.[0-9]+-gke\."),
    rule("eks", r"^v?[0-9]+\.[0-9]+\.[0-9]+-eks-"),
    rule("k3s", r"^v?[0-9]+\.[0-9]+\.[0-9]+\+k3s"),
    rule("rke2", r"^v?[0-9]+\.[0-9]+\.[0-9]+\+rke2"),
    rule("k0s", r"^v?[0-9]+\.[0-9]+\.[0-9]+\+k0s"),
    rule("vmware", r"^v?[0-9]+\.[0-9]+\.[0-9]+\+vmware"),
    rule("aliyun", r"^v?[0-9]+\.[0-9]+\.[0-9]+-aliyun\."),
    rule("tke", r"^v?[0-9]+\.[0-9]+\.[0-9]+-tke\."),
    rule("no suffix", r"^v?[0-9]+\.[0-9]+\.[0-9]+$"),
];

/// Vendors of accelerators, from the extended resource names in `nodes[].capacity[]`. Other
/// resources are not accelerators (NULL). Every name a rule matches is one a volunteer sends
/// verbatim ([`report::vocabulary::RESOURCE_VENDORS`], tested): a rule for any other name
/// would never match, as the volunteer sums such resources under `other`.
pub const ACCELERATOR_RULES: &[FamilyRule] = &[
    rule("nvidia", r"^nvidia\.com/"),
    rule("nvidia", r"^alpha\.kubernetes\.io/nvidia-gpu$"),
    rule("amd", r"^amd\.com/"),
    rule("intel", r"^gpu\.intel\.com/"),
    rule("habana", r"^habana\.ai/"),
    rule("aws-neuron", r"^aws\.amazon\.com/neuron"),
    rule("google-tpu", r"^google\.com/tpu$"),
    rule("xilinx", r"^xilinx\.com/"),
];

/// Architectures published by name (`nodes[].architecture`, Go's GOARCH values).
pub const ARCHITECTURES: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips64le", "ppc64le", "riscv64", "s390x",
];

/// Cloud providers published by name (`nodes[].cloudProvider`): the report's vocabulary, the
/// same list the volunteer sends by name (a name outside it is published as `other`).
pub const CLOUD_PROVIDERS: &[&str] = report::vocabulary::CLOUD_PROVIDERS;

/// The number of a quantity ([`report::quantity`]) with its exponent, for BigQuery.
const QUANTITY_NUMBER: &str = r"^(\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)";

/// A whole non-negative quantity, for BigQuery: the number, then an exponent or a suffix of
/// [`report::quantity::SUFFIXES`].
fn quantity_grammar() -> String {
    format!(
        r"^\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+|{})?$",
        suffix_alternatives()
    )
}

/// The suffix of a quantity that [`quantity_grammar`] matched (none for an exponent), for
/// BigQuery.
fn quantity_suffix() -> String {
    format!(r"^[+.0-9]*({})$", suffix_alternatives())
}

fn suffix_alternatives() -> String {
    SUFFIXES
        .iter()
        .map(|(suffix, _)| *suffix)
        .filter(|suffix| !suffix.is_empty())
        .collect::<Vec<_>>()
        .join("|")
}

/// Upper bounds (inclusive) and labels of ordered buckets; a value above the last bound gets
/// the `over` label, a NULL `unknown`.
#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    /// `(upper bound, label)`, ascending.
    pub bounds: &'static [(f64, &'static str)],
    /// Label above the last bound.
    pub over: &'static str,
}

impl Buckets {
    /// Every label in order, `unknown` last.
    pub fn labels(&self) -> Vec<&'static str> {
        let mut labels: Vec<&'static str> = self.bounds.iter().map(|(_, l)| *l).collect();
        labels.push(self.over);
        labels.push(UNKNOWN);
        labels
    }
}

const GIB: f64 = 1073741824.0;

/// CPU cores of a node.
pub const CPU_BUCKETS: Buckets = Buckets {
    bounds: &[
        (1.0, "1"),
        (2.0, "2"),
        (4.0, "3-4"),
        (8.0, "5-8"),
        (16.0, "9-16"),
        (32.0, "17-32"),
        (64.0, "33-64"),
        (128.0, "65-128"),
    ],
    over: "129+",
};

/// Memory of a node, in bytes (labels in GiB).
pub const MEMORY_BUCKETS: Buckets = Buckets {
    bounds: &[
        (2.0 * GIB, "0-2 GiB"),
        (4.0 * GIB, "2-4 GiB"),
        (8.0 * GIB, "4-8 GiB"),
        (16.0 * GIB, "8-16 GiB"),
        (32.0 * GIB, "16-32 GiB"),
        (64.0 * GIB, "32-64 GiB"),
        (128.0 * GIB, "64-128 GiB"),
        (256.0 * GIB, "128-256 GiB"),
        (512.0 * GIB, "256-512 GiB"),
    ],
    over: "512+ GiB",
};

/// Nodes in a cluster (the issue's buckets, plus 0 for a report without nodes).
pub const NODE_COUNT_BUCKETS: Buckets = Buckets {
    bounds: &[
        (0.0, "0"),
        (1.0, "1"),
        (3.0, "2-3"),
        (10.0, "4-10"),
        (50.0, "11-50"),
        (100.0, "51-100"),
        (500.0, "101-500"),
        (1000.0, "501-1000"),
        (5000.0, "1001-5000"),
    ],
    over: "5001+",
};

/// Namespaces in a cluster.
pub const NAMESPACE_BUCKETS: Buckets = Buckets {
    bounds: &[
        (5.0, "1-5"),
        (10.0, "6-10"),
        (20.0, "11-20"),
        (50.0, "21-50"),
        (100.0, "51-100"),
        (500.0, "101-500"),
        (1000.0, "501-1000"),
    ],
    over: "1001+",
};

/// Objects of one workload kind in a cluster.
pub const OBJECT_BUCKETS: Buckets = Buckets {
    bounds: &[
        (0.0, "0"),
        (10.0, "1-10"),
        (100.0, "11-100"),
        (1000.0, "101-1000"),
        (10000.0, "1001-10000"),
    ],
    over: "10001+",
};

/// Median age of the objects of one kind, in hours.
pub const AGE_BUCKETS: Buckets = Buckets {
    bounds: &[
        (23.0, "under 1 day"),
        (167.0, "1-7 days"),
        (719.0, "7-30 days"),
        (2159.0, "30-90 days"),
        (8759.0, "90-365 days"),
    ],
    over: "1 year+",
};

/// Version skew in minor versions (kubelet minus control plane).
pub const SKEW_BUCKETS: Buckets = Buckets {
    bounds: &[
        (-4.0, "-4 or less"),
        (-3.0, "-3"),
        (-2.0, "-2"),
        (-1.0, "-1"),
        (0.0, "0"),
    ],
    over: "+1 or more",
};

/// What a function computes.
#[derive(Debug, Clone, Copy)]
pub enum Definition {
    /// The family of the first matching rule; NULL input gives `null`, no match `no_match`.
    Family {
        /// The rules, first match wins.
        rules: &'static [FamilyRule],
        /// Result for NULL input.
        null: Option<&'static str>,
        /// Result when no rule matches.
        no_match: Option<&'static str>,
    },
    /// Group 1 of the first matching rule (`unknown` when that rule captured nothing); NULL
    /// input gives `unknown`, no match `other`. Pairs with a `Family` over the same rules.
    Version(&'static [FamilyRule]),
    /// Group 1 of the pattern; NULL input gives `unknown`, no match `other`.
    Capture(&'static str),
    /// Group 1 of the pattern as an integer; NULL otherwise.
    Integer(&'static str),
    /// The input itself when it is on the list; NULL gives `unknown`, anything else `other`.
    Allow(&'static [&'static str]),
    /// A capacity as a number: a Kubernetes quantity by the report's grammar
    /// ([`report::quantity`]; `3500m` → 3.5, `16Gi` → 17179869184, `1e9` → 1e9); NULL when it
    /// is not one, is negative (a capacity never is) or is beyond an f64.
    Quantity,
    /// A part of a Kubernetes version string, by the report's rule ([`report::version`]).
    Kube(KubePart),
    /// The bucket label of a number; NULL gives `unknown`.
    Buckets(Buckets),
}

/// What a [`Definition::Kube`] function reads from a `gitVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubePart {
    /// `MAJOR.MINOR`; NULL gives `unknown`, a string outside the rule `other`.
    Minor,
    /// `MAJOR.MINOR.PATCH`; NULL gives `unknown`, a string outside the rule or without a patch
    /// `other`.
    Patch,
    /// The major number as an integer; NULL otherwise.
    Major,
    /// The minor number as an integer; NULL otherwise. A skew in minors is a difference of
    /// two of these within one major only (the window SQL compares [`KubePart::Major`] first).
    MinorNumber,
}

impl KubePart {
    /// The same part as a pattern: what BigQuery evaluates. One group each (the part);
    /// [`report::version`]'s rule is `v?MAJOR.MINOR[.PATCH]` then the end, `-` or `+`, numbers
    /// without leading zeros of at most 3, 3 and 4 digits. A test holds the two to one answer.
    pub fn pattern(self) -> &'static str {
        match self {
            KubePart::Minor => {
                r"^v?((?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2}))(?:\.(?:0|[1-9][0-9]{0,3}))?(?:[-+]|$)"
            }
            KubePart::Patch => {
                r"^v?((?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,3}))(?:[-+]|$)"
            }
            KubePart::Major => {
                r"^v?(0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,3}))?(?:[-+]|$)"
            }
            KubePart::MinorNumber => {
                r"^v?(?:0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,3}))?(?:[-+]|$)"
            }
        }
    }

    /// The pattern's definition: a capture for the labels, an integer for the numbers.
    pub fn as_pattern(self) -> Definition {
        match self {
            KubePart::Minor | KubePart::Patch => Definition::Capture(self.pattern()),
            KubePart::Major | KubePart::MinorNumber => Definition::Integer(self.pattern()),
        }
    }

    fn eval(self, version: Option<GitVersion>) -> Value {
        let label = |label: Option<String>| Value::Text(label.unwrap_or_else(|| OTHER.to_owned()));
        match self {
            KubePart::Minor => label(version.map(|v| v.minor().to_string())),
            KubePart::Patch => label(version.filter(|v| v.patch.is_some()).map(|v| v.to_string())),
            KubePart::Major => version.map_or(Value::Null, |v| Value::Integer(v.major.into())),
            KubePart::MinorNumber => {
                version.map_or(Value::Null, |v| Value::Integer(v.minor.into()))
            }
        }
    }
}

/// SQL types of arguments and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// STRING / TEXT.
    Text,
    /// INT64 / INTEGER.
    Integer,
    /// FLOAT64 / REAL.
    Real,
}

impl SqlType {
    fn bigquery(self) -> &'static str {
        match self {
            SqlType::Text => "STRING",
            SqlType::Integer => "INT64",
            SqlType::Real => "FLOAT64",
        }
    }
}

/// One SQL function, available under `name` in both dialects.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    /// SQL name.
    pub name: &'static str,
    /// What it computes.
    pub definition: Definition,
}

/// A value going into or coming out of a function.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
}

impl Value {
    fn text(s: Option<&str>) -> Self {
        s.map_or(Value::Null, |s| Value::Text(s.to_owned()))
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            Value::Text(t) => t.parse().ok(),
            Value::Null => None,
        }
    }
}

/// Every function the SQL files may call.
pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "os_family",
        definition: Definition::Family {
            rules: OS_RULES,
            null: Some(UNKNOWN),
            no_match: Some(OTHER),
        },
    },
    Function {
        name: "os_version",
        definition: Definition::Version(OS_RULES),
    },
    Function {
        name: "runtime_name",
        definition: Definition::Family {
            rules: RUNTIME_RULES,
            null: Some(UNKNOWN),
            no_match: Some(OTHER),
        },
    },
    Function {
        name: "runtime_version",
        definition: Definition::Version(RUNTIME_RULES),
    },
    Function {
        name: "distribution",
        definition: Definition::Family {
            rules: DISTRIBUTION_RULES,
            null: Some(UNKNOWN),
            no_match: Some(OTHER),
        },
    },
    Function {
        name: "accelerator_vendor",
        definition: Definition::Family {
            rules: ACCELERATOR_RULES,
            null: None,
            no_match: None,
        },
    },
    Function {
        name: "kernel_minor",
        definition: Definition::Capture(r"^([0-9]{1,2}\.[0-9]{1,3})(?:[^0-9]|$)"),
    },
    Function {
        name: "kube_minor",
        definition: Definition::Kube(KubePart::Minor),
    },
    Function {
        name: "kube_patch",
        definition: Definition::Kube(KubePart::Patch),
    },
    Function {
        name: "kube_major",
        definition: Definition::Kube(KubePart::Major),
    },
    Function {
        name: "kube_minor_number",
        definition: Definition::Kube(KubePart::MinorNumber),
    },
    Function {
        name: "volunteer_version",
        definition: Definition::Capture(r"^(v?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,4})$"),
    },
    Function {
        name: "architecture",
        definition: Definition::Allow(ARCHITECTURES),
    },
    Function {
        name: "cloud_provider",
        definition: Definition::Allow(CLOUD_PROVIDERS),
    },
    Function {
        name: "quantity",
        definition: Definition::Quantity,
    },
    Function {
        name: "cpu_bucket",
        definition: Definition::Buckets(CPU_BUCKETS),
    },
    Function {
        name: "memory_bucket",
        definition: Definition::Buckets(MEMORY_BUCKETS),
    },
    Function {
        name: "node_count_bucket",
        definition: Definition::Buckets(NODE_COUNT_BUCKETS),
    },
    Function {
        name: "namespace_bucket",
        definition: Definition::Buckets(NAMESPACE_BUCKETS),
    },
    Function {
        name: "object_bucket",
        definition: Definition::Buckets(OBJECT_BUCKETS),
    },
    Function {
        name: "age_bucket",
        definition: Definition::Buckets(AGE_BUCKETS),
    },
    Function {
        name: "skew_bucket",
        definition: Definition::Buckets(SKEW_BUCKETS),
    },
];

/// Compiled patterns, once per process. Every pattern is a constant checked by the tests, so
/// compiling cannot fail at run time; a pattern that did would match nothing.
fn compiled(pattern: &'static str) -> &'static Regex {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(pattern).or_insert_with(|| {
        let re = Regex::new(pattern).unwrap_or_else(|_| {
            // Unreachable for the constant tables (tested); `$^` never matches.
            Regex::new("$^").unwrap_or_else(|_| unreachable!("a constant pattern"))
        });
        Box::leak(Box::new(re))
    })
}

fn first_match(rules: &'static [FamilyRule], s: &str) -> Option<(&'static str, Option<String>)> {
    rules.iter().find_map(|r| {
        compiled(r.pattern)
            .captures(s)
            .map(|c| (r.family, c.get(1).map(|m| m.as_str().to_owned())))
    })
}

impl Function {
    /// The SQL type of the argument.
    pub fn input(&self) -> SqlType {
        match self.definition {
            Definition::Buckets(_) => SqlType::Real,
            _ => SqlType::Text,
        }
    }

    /// The SQL type of the result.
    pub fn output(&self) -> SqlType {
        match self.definition {
            Definition::Integer(_)
            | Definition::Kube(KubePart::Major)
            | Definition::Kube(KubePart::MinorNumber) => SqlType::Integer,
            Definition::Quantity => SqlType::Real,
            _ => SqlType::Text,
        }
    }

    /// The function by its SQL name.
    pub fn named(name: &str) -> Option<&'static Function> {
        FUNCTIONS.iter().find(|f| f.name == name)
    }

    /// Evaluates the function in Rust (the SQLite store's implementation).
    pub fn eval(&self, input: &Value) -> Value {
        let text = match input {
            Value::Text(s) => Some(s.as_str()),
            _ => None,
        };
        let null = matches!(input, Value::Null);
        match self.definition {
            Definition::Family {
                rules,
                null: if_null,
                no_match,
            } => match text {
                None => Value::text(if_null),
                Some(s) => Value::text(first_match(rules, s).map(|(f, _)| f).or(no_match)),
            },
            Definition::Version(rules) => match text {
                None => Value::text(Some(UNKNOWN)),
                Some(s) => match first_match(rules, s) {
                    Some((_, Some(v))) => Value::Text(v),
                    Some((_, None)) => Value::text(Some(UNKNOWN)),
                    None => Value::text(Some(OTHER)),
                },
            },
            Definition::Capture(pattern) => match text {
                None => Value::text(Some(UNKNOWN)),
                Some(s) => match compiled(pattern).captures(s).and_then(|c| c.get(1)) {
                    Some(m) => Value::Text(m.as_str().to_owned()),
                    None => Value::text(Some(OTHER)),
                },
            },
            Definition::Integer(pattern) => text
                .and_then(|s| compiled(pattern).captures(s))
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().parse::<i64>().ok())
                .map_or(Value::Null, Value::Integer),
            Definition::Allow(list) => match text {
                None => Value::text(Some(UNKNOWN)),
                Some(s) if list.contains(&s) => Value::Text(s.to_owned()),
                Some(_) => Value::text(Some(OTHER)),
            },
            Definition::Quantity => text.and_then(capacity).map_or(Value::Null, Value::Real),
            Definition::Kube(part) => match text {
                None if matches!(part, KubePart::Minor | KubePart::Patch) => {
                    Value::text(Some(UNKNOWN))
                }
                None => Value::Null,
                Some(s) => part.eval(GitVersion::parse(s)),
            },
            Definition::Buckets(buckets) => {
                if null {
                    return Value::text(Some(UNKNOWN));
                }
                match input.as_f64() {
                    None => Value::text(Some(UNKNOWN)),
                    Some(x) => Value::text(Some(
                        buckets
                            .bounds
                            .iter()
                            .find(|(upper, _)| x <= *upper)
                            .map_or(buckets.over, |(_, l)| l),
                    )),
                }
            }
        }
    }

    /// The BigQuery expression computing the function of the SQL expression `x`.
    pub fn bigquery_expression(&self, x: &str) -> String {
        let lit = |s: Option<&str>| s.map_or_else(|| "CAST(NULL AS STRING)".to_owned(), quote);
        match self.definition {
            Definition::Family {
                rules,
                null,
                no_match,
            } => {
                let mut sql = format!("CASE WHEN {x} IS NULL THEN {}", lit(null));
                for r in rules {
                    sql.push_str(&format!(
                        " WHEN REGEXP_CONTAINS({x}, r'{}') THEN {}",
                        r.pattern,
                        quote(r.family)
                    ));
                }
                sql.push_str(&format!(" ELSE {} END", lit(no_match)));
                sql
            }
            Definition::Version(rules) => {
                let mut sql = format!("CASE WHEN {x} IS NULL THEN '{UNKNOWN}'");
                for r in rules {
                    let version = if compiled(r.pattern).captures_len() > 1 {
                        format!(
                            "COALESCE(NULLIF(REGEXP_EXTRACT({x}, r'{}'), ''), '{UNKNOWN}')",
                            r.pattern
                        )
                    } else {
                        format!("'{UNKNOWN}'")
                    };
                    sql.push_str(&format!(
                        " WHEN REGEXP_CONTAINS({x}, r'{}') THEN {version}",
                        r.pattern
                    ));
                }
                sql.push_str(&format!(" ELSE '{OTHER}' END"));
                sql
            }
            Definition::Capture(pattern) => format!(
                "CASE WHEN {x} IS NULL THEN '{UNKNOWN}' ELSE COALESCE(NULLIF(REGEXP_EXTRACT({x}, r'{pattern}'), ''), '{OTHER}') END"
            ),
            Definition::Integer(pattern) => {
                format!("SAFE_CAST(REGEXP_EXTRACT({x}, r'{pattern}') AS INT64)")
            }
            Definition::Allow(list) => {
                let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
                format!(
                    "CASE WHEN {x} IS NULL THEN '{UNKNOWN}' WHEN {x} IN ({}) THEN {x} ELSE '{OTHER}' END",
                    items.join(", ")
                )
            }
            Definition::Quantity => {
                let number =
                    format!("SAFE_CAST(REGEXP_EXTRACT({x}, r'{QUANTITY_NUMBER}') AS FLOAT64)");
                let mut value = format!(
                    "CASE COALESCE(REGEXP_EXTRACT({x}, r'{}'), '')",
                    quantity_suffix()
                );
                for (suffix, scale) in SUFFIXES {
                    let scaled = match scale {
                        Scale::Times(m) => format!("{number} * {}", float(*m)),
                        Scale::Over(d) => format!("{number} / {}", float(*d)),
                    };
                    value.push_str(&format!(" WHEN '{suffix}' THEN {scaled}"));
                }
                value.push_str(" END");
                // The value once, checked for infinity (`1e999`): Rust reads it as infinite,
                // BigQuery's cast may too. A minus sign is left out by the grammar.
                format!(
                    "CASE WHEN REGEXP_CONTAINS({x}, r'{}') THEN \
                     (SELECT IF(IS_INF(v), NULL, v) FROM UNNEST([{value}]) AS v) END",
                    quantity_grammar()
                )
            }
            Definition::Kube(part) => Function {
                name: self.name,
                definition: part.as_pattern(),
            }
            .bigquery_expression(x),
            Definition::Buckets(buckets) => {
                let mut sql = format!("CASE WHEN {x} IS NULL THEN '{UNKNOWN}'");
                for (upper, label) in buckets.bounds {
                    sql.push_str(&format!(
                        " WHEN {x} <= {} THEN {}",
                        float(*upper),
                        quote(label)
                    ));
                }
                sql.push_str(&format!(" ELSE {} END", quote(buckets.over)));
                sql
            }
        }
    }

    /// The `CREATE TEMP FUNCTION` statement declaring the function in a BigQuery query.
    pub fn bigquery(&self) -> String {
        format!(
            "CREATE TEMP FUNCTION {}(x {}) RETURNS {} AS ({});",
            self.name,
            self.input().bigquery(),
            self.output().bigquery(),
            self.bigquery_expression("x")
        )
    }
}

/// A capacity as a number ([`Definition::Quantity`]): the report's quantity, unless it is
/// negative (a minus sign, `-0` included) or beyond an f64.
pub(crate) fn capacity(s: &str) -> Option<f64> {
    Quantity::parse(s)
        .filter(|q| !q.number.is_sign_negative())
        .map(|q| q.value())
        .filter(|v| v.is_finite())
}

/// A string literal; labels and patterns are constants without quotes (tested).
fn quote(s: &str) -> String {
    format!("'{s}'")
}

/// A float literal BigQuery reads back as the same f64.
fn float(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// Every `CREATE TEMP FUNCTION` statement, for the start of a BigQuery query.
pub fn bigquery_prelude() -> String {
    FUNCTIONS
        .iter()
        .map(Function::bigquery)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(name: &str, input: &str) -> Value {
        Function::named(name)
            .unwrap()
            .eval(&Value::Text(input.into()))
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn every_pattern_compiles_and_fits_in_a_bigquery_raw_string() {
        let (grammar, suffix) = (quantity_grammar(), quantity_suffix());
        let mut patterns: Vec<&str> = vec![QUANTITY_NUMBER, &grammar, &suffix];
        for f in FUNCTIONS {
            match f.definition {
                Definition::Family { rules, .. } | Definition::Version(rules) => {
                    patterns.extend(rules.iter().map(|r| r.pattern));
                    for r in rules {
                        assert!(!r.family.contains('\''), "{}", r.family);
                    }
                }
                Definition::Capture(p) | Definition::Integer(p) => patterns.push(p),
                Definition::Kube(part) => patterns.push(part.pattern()),
                _ => {}
            }
        }
        for p in patterns {
            let re = Regex::new(p).unwrap();
            assert!(re.captures_len() <= 2, "{p}: at most one capturing group");
            assert!(!p.contains('\'') && !p.contains('\n'), "{p}");
            assert!(p.starts_with('^'), "{p}: anchored");
        }
    }

    #[test]
    fn os_images_become_a_family_and_the_release_a_person_would_name() {
        for (image, family, version) in [
            ("Ubuntu 24.04.1 LTS", "Ubuntu", "24.04"),
            ("Ubuntu 22.04.5 LTS", "Ubuntu", "22.04"),
            ("Container-Optimized OS from Google", "COS", UNKNOWN),
            (
                "Bottlerocket OS 1.20.0 (aws-k8s-1.29)",
                "Bottlerocket",
                "1.20",
            ),
            ("Debian GNU/Linux 12 (bookworm)", "Debian", "12"),
            ("Amazon Linux 2", "Amazon Linux", "2"),
            ("Amazon Linux 2023.6.20241121", "Amazon Linux", "2023"),
            (
                "Flatcar Container Linux by Kinvolk 3815.2.0 (Oklo)",
                "Flatcar",
                "3815",
            ),
            ("Talos (v1.8.0)", "Talos", "1.8"),
            (
                "Red Hat Enterprise Linux CoreOS 418.94.202501221327-0",
                "RHCOS",
                "418",
            ),
            ("Red Hat Enterprise Linux 9.4 (Plow)", "RHEL", "9"),
            ("SUSE Linux Enterprise Server 15 SP5", "SLES", "15 SP5"),
            ("CBL-Mariner/Linux", "Azure Linux", UNKNOWN),
            ("Windows Server 2022 Datacenter", "Windows Server", "2022"),
            ("Alpine Linux v3.20", "Alpine", "3.20"),
            ("My Company Linux 7", OTHER, OTHER),
        ] {
            assert_eq!(text("os_family", image), t(family), "{image}");
            assert_eq!(text("os_version", image), t(version), "{image}");
        }
        let null = Function::named("os_family").unwrap().eval(&Value::Null);
        assert_eq!(null, t(UNKNOWN));
    }

    #[test]
    fn runtimes_kernels_and_versions_are_cut_to_their_minor() {
        assert_eq!(text("runtime_name", "containerd://1.7.22"), t("containerd"));
        assert_eq!(text("runtime_version", "containerd://1.7.22"), t("1.7"));
        assert_eq!(text("runtime_version", "cri-o://1.31.1"), t("1.31"));
        assert_eq!(text("runtime_name", "docker://20.10.7"), t("docker"));
        assert_eq!(text("runtime_version", "docker://20.10.7"), t("20.10"));
        assert_eq!(text("runtime_version", "containerd://abc"), t(UNKNOWN));
        assert_eq!(text("runtime_name", "frakti://1.0"), t(OTHER));
        assert_eq!(text("kernel_minor", "6.8.0-1015-gke"), t("6.8"));
        assert_eq!(text("kernel_minor", "3.16.0-4-amd64"), t("3.16"));
        assert_eq!(text("kernel_minor", "custom"), t(OTHER));
        assert_eq!(text("kube_minor", "v1.37.2"), t("1.37"));
        assert_eq!(text("kube_patch", "v1.37.2-gke.100"), t("1.37.2"));
        assert_eq!(text("kube_patch", "v1.37"), t(OTHER));
        assert_eq!(
            text("kube_minor_number", "v1.29.8+k3s1"),
            Value::Integer(29)
        );
        assert_eq!(text("kube_minor", "v2.0.1"), t("2.0"), "a future major");
        assert_eq!(text("kube_major", "v2.0.1"), Value::Integer(2));
        assert_eq!(text("kube_minor_number", "v2.0.1"), Value::Integer(0));
        assert_eq!(text("kube_minor", "v01.2"), t(OTHER));
        assert_eq!(text("volunteer_version", "v1.0.0"), t("v1.0.0"));
        assert_eq!(text("volunteer_version", "v1.0.0-dirty"), t(OTHER));
    }

    #[test]
    fn distributions_are_recognised_from_an_allowlist_of_suffixes() {
        for (version, flavor) in [
            ("v1.30.5-gke.1014001", "gke"),
            ("v1.30.4-eks-a737599", "eks"),
            ("v1.31.1+k3s1", "k3s"),
            ("v1.31.1+rke2r1", "rke2"),
            ("v1.37.2", "no suffix"),
            ("v1.27.6+b49f9d1", OTHER),
            ("v1.3.5-private-build", OTHER),
        ] {
            assert_eq!(text("distribution", version), t(flavor), "{version}");
        }
    }

    #[test]
    fn quantities_scale_by_their_suffix() {
        assert_eq!(capacity("4"), Some(4.0));
        assert_eq!(capacity("3500m"), Some(3.5));
        assert_eq!(capacity("15437428Ki"), Some(15437428.0 * 1024.0));
        assert_eq!(capacity("16Gi"), Some(16.0 * GIB));
        assert_eq!(capacity("1e3"), Some(1000.0));
        assert_eq!(capacity("-1"), None, "a capacity is never negative");
        assert_eq!(capacity("-0"), None);
        assert_eq!(capacity("1e999"), None, "beyond an f64");
        assert_eq!(capacity("1.5.5"), None);
        let cpu = Function::named("cpu_bucket").unwrap();
        assert_eq!(cpu.eval(&Value::Real(4.0)), t("3-4"));
        assert_eq!(cpu.eval(&Value::Real(0.5)), t("1"));
        assert_eq!(cpu.eval(&Value::Real(200.0)), t("129+"));
        assert_eq!(cpu.eval(&Value::Null), t(UNKNOWN));
        let memory = Function::named("memory_bucket").unwrap();
        assert_eq!(
            memory.eval(&Value::Real(15437428.0 * 1024.0)),
            t("8-16 GiB")
        );
        let quantity = Function::named("quantity").unwrap();
        let bucket = |value: &str| memory.eval(&quantity.eval(&t(value)));
        assert_eq!(bucket("1e9"), t("0-2 GiB"), "1e9 bytes, not unknown");
        assert_eq!(bucket("16e9"), t("8-16 GiB"));
        assert_eq!(bucket("17179869184"), bucket("16Gi"));
        assert_eq!(bucket("sixteen"), t(UNKNOWN));
        let skew = Function::named("skew_bucket").unwrap();
        assert_eq!(skew.eval(&Value::Integer(-7)), t("-4 or less"));
        assert_eq!(skew.eval(&Value::Integer(0)), t("0"));
        assert_eq!(skew.eval(&Value::Integer(2)), t("+1 or more"));
    }

    #[test]
    fn every_label_is_a_constant_or_a_captured_version() {
        // Whatever the input, the output is on a list or digits, dots and "SP".
        let shape = Regex::new(r"^v?[0-9]+(?:\.[0-9]+)*(?: SP[0-9]+)?$").unwrap();
        let inputs = [
            "Ubuntu 24.04.1 LTS secret-host",
            "SUSE Linux Enterprise Server 15 SP5 at acme",
            "containerd://1.7.22-acme-build",
            "v1.37.2+acme",
            "6.8.0-acme",
            "Windows Server 2022 build acme",
            "acme",
        ];
        for f in FUNCTIONS {
            if f.input() != SqlType::Text || f.output() != SqlType::Text {
                continue;
            }
            let constants: Vec<&str> = match f.definition {
                Definition::Family { rules, .. } => rules.iter().map(|r| r.family).collect(),
                Definition::Allow(list) => list.to_vec(),
                _ => vec![],
            };
            for input in inputs {
                if let Value::Text(out) = f.eval(&Value::Text(input.into())) {
                    assert!(
                        out == OTHER
                            || out == UNKNOWN
                            || constants.contains(&out.as_str())
                            || shape.is_match(&out),
                        "{}({input:?}) = {out:?}",
                        f.name
                    );
                    assert!(!out.contains("acme"), "{}({input:?}) = {out:?}", f.name);
                }
            }
        }
    }

    #[test]
    fn bigquery_functions_are_declared_once_each() {
        let prelude = bigquery_prelude();
        for f in FUNCTIONS {
            assert_eq!(
                prelude
                    .matches(&format!("CREATE TEMP FUNCTION {}(", f.name))
                    .count(),
                1
            );
        }
        assert!(float(1.0) == "1.0" && float(0.5) == "0.5" && float(-4.0) == "-4.0");
    }

    /// Every string over an alphabet that reaches each branch of the version rule, up to
    /// `len` characters.
    fn strings(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Inputs of the version rule worth naming, on top of the generated ones.
    const TRICKY_VERSIONS: &[&str] = &[
        "v2.0.1",
        "v1.37.2-gke.1",
        "1.29",
        "v1.28+k3s1",
        "v1",
        "v01.2",
        "garbage",
        "v1.37.2",
        "v1.30.4-eks-a737599",
        "v1.27.6+b49f9d1",
        "v0.21.4",
        "v1.999.9999",
        "v1.1000.0",
        "v1000.0.0",
        "v1.2.10000",
        "v1.02.3",
        "v1.2.03",
        "v1.37.2.1",
        "v1.37.2foo",
        "v1.37.",
        "V1.2.3",
        " v1.2.3",
        "",
    ];

    #[test]
    fn the_bigquery_version_patterns_answer_as_the_report_rule_does() {
        let mut inputs = strings(&['v', '0', '1', '2', '.', '-', '+', 'x'], 6);
        inputs.extend(strings(&['1', '0', '.'], 9));
        inputs.extend(TRICKY_VERSIONS.iter().map(|s| (*s).to_owned()));
        for part in [
            KubePart::Minor,
            KubePart::Patch,
            KubePart::Major,
            KubePart::MinorNumber,
        ] {
            let rule = Function {
                name: "rule",
                definition: Definition::Kube(part),
            };
            let pattern = Function {
                name: "pattern",
                definition: part.as_pattern(),
            };
            assert_eq!(rule.eval(&Value::Null), pattern.eval(&Value::Null));
            for input in &inputs {
                let input = Value::Text(input.clone());
                assert_eq!(
                    rule.eval(&input),
                    pattern.eval(&input),
                    "{part:?} of {input:?}"
                );
            }
        }
    }

    /// What the BigQuery expression of `quantity` computes, with Rust's regex (RE2's syntax).
    struct AsBigQuery {
        grammar: Regex,
        number: Regex,
        suffix: Regex,
    }

    impl AsBigQuery {
        fn new() -> Self {
            AsBigQuery {
                grammar: Regex::new(&quantity_grammar()).unwrap(),
                number: Regex::new(QUANTITY_NUMBER).unwrap(),
                suffix: Regex::new(&quantity_suffix()).unwrap(),
            }
        }

        fn quantity(&self, s: &str) -> Option<f64> {
            if !self.grammar.is_match(s) {
                return None;
            }
            let number: f64 = self.number.captures(s)?[1].parse().ok()?;
            let suffix = self
                .suffix
                .captures(s)
                .map_or("", |c| c.get(1).map_or("", |m| m.as_str()));
            let (_, scale) = SUFFIXES.iter().find(|(x, _)| *x == suffix)?;
            Some(scale.apply(number)).filter(|v| !v.is_infinite())
        }
    }

    #[test]
    fn the_bigquery_quantity_expression_reads_the_report_grammar() {
        let mut inputs = strings(&['1', '0', '.', '+', '-', 'e', 'E', 'm', 'i', 'K'], 5);
        inputs.extend(
            [
                "1e9",
                "1E3",
                "7E",
                "7Ei",
                "7E3Ki",
                "100n",
                "3u",
                "1.5e+10",
                "1E-3",
                "15437428Ki",
                "1e999",
                "1e400",
                "-1",
                "-0",
                "+0",
                ".5",
                "5.",
                "1k",
                "1M",
                "16Gi",
                "2Pi",
            ]
            .map(str::to_owned),
        );
        let bigquery = AsBigQuery::new();
        for input in &inputs {
            assert_eq!(capacity(input), bigquery.quantity(input), "{input:?}");
        }
    }

    #[test]
    fn every_accelerator_name_is_one_the_volunteer_sends_verbatim() {
        // A rule names a domain, and the volunteer sends a resource of that domain by name
        // only when it is a listed vendor's; anything else arrives summed as `other`.
        for rule in ACCELERATOR_RULES {
            let domain = rule
                .pattern
                .strip_prefix('^')
                .and_then(|p| p.split_once('/'))
                .map(|(domain, _)| domain.replace(r"\.", "."))
                .unwrap_or_default();
            assert!(
                !domain.is_empty() && !domain.contains(['\\', '[', '(', '*', '+', '?', '|']),
                "{}: a rule starts with a literal domain",
                rule.pattern
            );
            assert!(
                report::vocabulary::is_vendor_domain(&domain),
                "{} ({}): {domain} is not in report::vocabulary::RESOURCE_VENDORS",
                rule.family,
                rule.pattern
            );
        }
        let vendor = Function::named("accelerator_vendor").unwrap();
        assert_eq!(vendor.eval(&t("other")), Value::Null);
    }
}
