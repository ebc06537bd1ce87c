//! Types shared by several kinds (containers, probes, selectors in specs). Filled by the resource model.
