//! Geo coarsening (`coarsen:country`): a location record becomes `{"country": c}`,
//! exactly what `decide.project_plan` builds for `T_COUNTRY` (the record's `country`
//! as it is; the entry is left out when the record has no non-null `country`).

use crate::json_scan::{Kind, Res, Tape};

/// Write `{"country":<c>}` for the record node `rec`; Ok(false) when the entry is left out
/// (not a record, or no non-null country).
pub fn coarsen_country(tape: &Tape, src: &[u8], rec: u32, out: &mut Vec<u8>) -> Res<bool> {
    if tape.node(rec).kind != Kind::Obj {
        return Ok(false);
    }
    match tape.get(src, rec, b"country")? {
        None => Ok(false),
        Some(c) => {
            out.extend_from_slice(b"{\"country\":");
            tape.write_value(src, c, out)?;
            out.push(b'}');
            Ok(true)
        }
    }
}
