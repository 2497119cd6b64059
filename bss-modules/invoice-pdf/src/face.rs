//! A font face as the layout uses it: the PDF writer's font (embedded and subset by
//! krilla) and its bytes, from which characters are mapped to glyphs and measured (the
//! font's `cmap` and horizontal advances through skrifa). There is no shaping: invoices
//! are set left to right, one glyph per character, which is right for the Latin, Greek
//! and Cyrillic texts DejaVu Sans covers; a character the font lacks prints as its
//! `.notdef` box and still extracts as text.
// Advances and widths are layout in points, never money.
#![allow(clippy::float_arithmetic)]

use krilla::text::{Font, GlyphId, KrillaGlyph};
use krilla::Data;
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

/// A font and its bytes.
#[derive(Clone)]
pub(crate) struct Face {
    pub(crate) font: Font,
    data: Data,
}

impl Face {
    /// `None` when `data` is not a TrueType/OpenType font.
    pub(crate) fn new(data: Data) -> Option<Face> {
        FontRef::new(data.as_ref()).ok()?;
        let font = Font::new(data.clone(), 0)?;
        Some(Face { font, data })
    }

    /// The glyphs of `text`, with advances in em, each covering its character's bytes.
    pub(crate) fn glyphs(&self, text: &str) -> Vec<KrillaGlyph> {
        let Ok(font) = FontRef::new(self.data.as_ref()) else { return Vec::new() };
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(Size::unscaled(), LocationRef::default());
        let units_per_em = f32::from(font.metrics(Size::unscaled(), LocationRef::default()).units_per_em.max(1));
        text.char_indices()
            .map(|(start, c)| {
                let glyph = charmap.map(c).unwrap_or_default();
                let advance = metrics.advance_width(glyph).unwrap_or(0.0) / units_per_em;
                KrillaGlyph::new(
                    GlyphId::new(glyph.to_u32()),
                    advance,
                    0.0,
                    0.0,
                    0.0,
                    start..start + c.len_utf8(),
                    None,
                )
            })
            .collect()
    }

    /// The width of `text` at `size` points.
    pub(crate) fn width(&self, text: &str, size: f32) -> f32 {
        self.glyphs(text).iter().map(|glyph| glyph.x_advance).sum::<f32>() * size
    }
}
