//! [`Slab`]: an array owned or viewed in place in a container's memory map, and the
//! [`Plain`] element types it holds.

use std::sync::Arc;

use super::reader::Bytes;

/// The element types a [`Slab`] can hold and a container section stores: `u8`, `u32`,
/// `u64` and `f32`, each written little-endian.
///
/// The trait is sealed (implemented here and nowhere else): a mapped slab reinterprets
/// file bytes as `[T]`, which is sound only for plain numbers that are valid for every bit
/// pattern ([`bytemuck::Pod`]) and whose file encoding is their little-endian bytes.
pub trait Plain: sealed::Sealed + bytemuck::Pod + Send + Sync + std::fmt::Debug {
    /// Decodes one value from its little-endian bytes (`size_of::<Self>()` of them).
    fn from_le(b: &[u8]) -> Self {
        let mut v = Self::zeroed();
        let out = bytemuck::bytes_of_mut(&mut v);
        out.copy_from_slice(&b[..out.len()]);
        if cfg!(target_endian = "big") {
            out.reverse();
        }
        v
    }
}

mod sealed {
    /// Keeps [`super::Plain`] closed to the types below.
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl Sealed for f32 {}
}

impl Plain for u8 {}
impl Plain for u32 {}
impl Plain for u64 {}
impl Plain for f32 {}

/// A read-mostly array that is either owned or a view into an opened container's
/// memory map — so opening an index does not copy its big sections, and several
/// processes share the pages. The first mutation copies a mapped slab into memory
/// (copy on write).
///
/// ```
/// use vecquant::store::Slab;
/// let mut s: Slab<u64> = Slab::from(vec![1, 2]);
/// s.to_mut().push(3);
/// assert_eq!(&s[..], &[1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct Slab<T: Plain> {
    inner: SlabInner<T>,
}

#[derive(Clone)]
enum SlabInner<T> {
    Owned(Vec<T>),
    Mapped {
        map: Arc<Bytes>,
        offset: usize,
        len: usize,
    },
}

impl<T: Plain> Slab<T> {
    /// A view of `len` values at byte `offset` of `map`, if the host is little-endian and
    /// the address is aligned for `T` (section offsets are 64-byte aligned and maps are
    /// page aligned, so this holds for files; in-memory buffers may not be).
    pub(super) fn mapped(map: Arc<Bytes>, offset: usize, len: usize) -> Option<Self> {
        let size = std::mem::size_of::<T>();
        let end = offset.checked_add(len.checked_mul(size)?)?;
        let aligned = (map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>());
        if cfg!(target_endian = "little") && aligned && end <= map.len() {
            Some(Slab {
                inner: SlabInner::Mapped { map, offset, len },
            })
        } else {
            None
        }
    }

    /// Whether the data is a view into a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(&self.inner, SlabInner::Mapped { map, .. } if matches!(**map, Bytes::Mapped(_)))
    }

    /// The owned vector, copying a mapped slab first.
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let SlabInner::Mapped { .. } = self.inner {
            let v = self.to_vec();
            self.inner = SlabInner::Owned(v);
        }
        match &mut self.inner {
            SlabInner::Owned(v) => v,
            SlabInner::Mapped { .. } => unreachable!("converted above"),
        }
    }
}

impl<T: Plain> Slab<T> {
    /// Appends `v`: nothing for an empty `v` (a mapped slab stays mapped), `v` itself
    /// for an empty slab (no copy), else an owned copy extended.
    pub fn append(&mut self, v: Vec<T>) {
        if v.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = Slab::from(v);
        } else {
            self.to_mut().extend_from_slice(&v);
        }
    }
}

impl<T: Plain> From<Vec<T>> for Slab<T> {
    fn from(v: Vec<T>) -> Self {
        Slab {
            inner: SlabInner::Owned(v),
        }
    }
}

impl<T: Plain> Default for Slab<T> {
    fn default() -> Self {
        Slab::from(Vec::new())
    }
}

impl<T: Plain> std::ops::Deref for Slab<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.inner {
            SlabInner::Owned(v) => v,
            SlabInner::Mapped { map, offset, len } => {
                // `mapped` checked that the range lies inside the map and that its address
                // is aligned for `T`, so the cast cannot fail; `T: Pod` makes every bit
                // pattern a valid value, and the host is little-endian like the file.
                bytemuck::cast_slice(&map[*offset..*offset + *len * std::mem::size_of::<T>()])
            }
        }
    }
}

impl<T: Plain> std::fmt::Debug for Slab<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Slab({} values, mapped: {})",
            self.len(),
            self.is_mapped()
        )
    }
}

impl<T: Plain + PartialEq> PartialEq for Slab<T> {
    fn eq(&self, o: &Self) -> bool {
        self[..] == o[..]
    }
}
