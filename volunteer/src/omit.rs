//! What the operator may leave out of a report (`--omit`). The names are the report's section
//! names, from the `report` crate, so what `--omit` takes and what `skipped` records are one list.

use report::section;

/// A field the operator chose to leave out (`--omit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Omit {
    /// The whole `nodes` array.
    Nodes,
    /// One field of every node.
    NodeField(NodeField),
    /// `masterVersion`.
    MasterVersion,
    /// The namespace count (and the zero bucket of the histograms, which would reveal it).
    Namespaces,
    /// All workload statistics.
    Workloads,
    /// The ages in the workload statistics.
    Ages,
    /// The operator's extensions.
    Extensions,
}

/// The optional fields of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeField {
    /// `operatingSystem`.
    OperatingSystem,
    /// `osImage`.
    OsImage,
    /// `kernelVersion`.
    KernelVersion,
    /// `architecture`.
    Architecture,
    /// `containerRuntimeVersion`.
    ContainerRuntimeVersion,
    /// `kubeletVersion`.
    KubeletVersion,
    /// `cloudProvider`.
    CloudProvider,
    /// `capacity`.
    Capacity,
}

impl NodeField {
    /// Every node field, in report order.
    pub(crate) const ALL: [NodeField; 8] = [
        NodeField::OperatingSystem,
        NodeField::OsImage,
        NodeField::KernelVersion,
        NodeField::Architecture,
        NodeField::ContainerRuntimeVersion,
        NodeField::KubeletVersion,
        NodeField::CloudProvider,
        NodeField::Capacity,
    ];

    /// The section name of this field of every node, e.g. `nodes.osImage`.
    pub(crate) const fn section(self) -> &'static str {
        match self {
            NodeField::OperatingSystem => section::NODES_OPERATING_SYSTEM,
            NodeField::OsImage => section::NODES_OS_IMAGE,
            NodeField::KernelVersion => section::NODES_KERNEL_VERSION,
            NodeField::Architecture => section::NODES_ARCHITECTURE,
            NodeField::ContainerRuntimeVersion => section::NODES_CONTAINER_RUNTIME_VERSION,
            NodeField::KubeletVersion => section::NODES_KUBELET_VERSION,
            NodeField::CloudProvider => section::NODES_CLOUD_PROVIDER,
            NodeField::Capacity => section::NODES_CAPACITY,
        }
    }
}

impl Omit {
    /// The section name, as `--omit` takes it and `skipped` records it.
    pub const fn section(self) -> &'static str {
        match self {
            Omit::Nodes => section::NODES,
            Omit::NodeField(f) => f.section(),
            Omit::MasterVersion => section::MASTER_VERSION,
            Omit::Namespaces => section::NAMESPACES,
            Omit::Workloads => section::WORKLOADS,
            Omit::Ages => section::AGES,
            Omit::Extensions => section::EXTENSIONS,
        }
    }

    /// Every field `--omit` accepts.
    pub fn all() -> Vec<Omit> {
        let mut all = vec![Omit::Nodes];
        all.extend(NodeField::ALL.map(Omit::NodeField));
        all.extend([
            Omit::MasterVersion,
            Omit::Namespaces,
            Omit::Workloads,
            Omit::Ages,
            Omit::Extensions,
        ]);
        all
    }

    /// Parses an `--omit` value.
    pub(crate) fn parse(s: &str) -> Result<Omit, String> {
        let s = s.trim();
        Omit::all()
            .into_iter()
            .find(|o| o.section() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Omit::all().into_iter().map(Omit::section).collect();
                format!("unknown field {s:?}; expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_omittable_field_parses_by_its_section_name() {
        for o in Omit::all() {
            assert_eq!(Omit::parse(o.section()), Ok(o));
            assert!(report::validate::SECTIONS.contains(&o.section()));
        }
        assert_eq!(Omit::all().len(), 14);
    }

    #[test]
    fn every_section_but_single_workload_kinds_can_be_omitted() {
        let omittable: Vec<&str> = Omit::all().into_iter().map(Omit::section).collect();
        for name in report::validate::SECTIONS {
            let per_kind = report::Kind::ALL
                .iter()
                .any(|&k| section::workload(k) == name);
            assert_eq!(omittable.contains(&name), !per_kind, "{name}");
        }
    }
}
