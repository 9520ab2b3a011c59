//! Platform ids to the merchant's SKUs and locations.
//!
//! Products and locations carry `aliases` such as `shopify:808950810`; a
//! translator asks for `(platform, id)` and gets the SKU or location, or a
//! reason naming what could not be mapped.

use std::collections::BTreeMap;

use tally_core::catalog::{Location, Platform, Product};
use tally_core::{LocationId, Sku};

#[derive(Debug, Clone, Default)]
pub struct Mappings {
    skus: BTreeMap<String, Sku>,
    locations: BTreeMap<String, LocationId>,
}

impl Mappings {
    pub fn new<'a>(
        products: impl IntoIterator<Item = &'a Product>,
        locations: impl IntoIterator<Item = &'a Location>,
    ) -> Self {
        let mut m = Mappings::default();
        for p in products {
            for a in &p.aliases {
                m.skus.insert(a.clone(), p.sku.clone());
            }
        }
        for l in locations {
            for a in &l.aliases {
                m.locations.insert(a.clone(), l.id.clone());
            }
        }
        m
    }

    pub fn sku(&self, platform: Platform, id: &str) -> Option<&Sku> {
        self.skus.get(&format!("{}:{id}", platform.as_str()))
    }

    pub fn location(&self, platform: Platform, id: &str) -> Option<&LocationId> {
        self.locations.get(&format!("{}:{id}", platform.as_str()))
    }
}
