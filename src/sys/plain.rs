//! Plain data: the C structs of the ABI as bytes and back, bounds-checked.
//!
//! [`FromBytes`]: every bit pattern of the type's size is a valid value, so
//! a value can be read from any bytes (kernel-written bytes are untrusted:
//! reading them never produces an invalid value, only a wrong one, which the
//! typed layer checks). [`IntoBytes`]: in addition the type has no padding,
//! so all of its bytes are initialised and may be handed to the kernel or
//! written over.
//!
//! Neither is implemented by hand: the crate's `plain!` macro implements them and
//! proves, at compile time, what they promise — every field's type is
//! itself plain (the primitive integers and arrays of plain types are, by
//! the impls below), and for `IntoBytes` the field sizes add up to the
//! struct's size, so there is no gap between fields and none at the end.
//! `build.rs` invokes it for every generated struct and union that has no
//! pointer and no flexible array member (bindgen's layout assertions, which
//! follow each struct, check the C layout itself). Structs holding a union
//! get only `FromBytes`: under a union's smaller member there may be
//! padding.
//!
//! The crate's own mirror structs (`abi.rs`) use the same macro.

use core::mem::size_of;

/// The bytes were too few (or, for [`FromBytes::read_from_bytes`], not
/// exactly as many as the type's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeError;

/// A type every bit pattern of whose size is a valid value.
///
/// # Safety
///
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid value:
/// every field (every member of a union) is itself `FromBytes`. Within this
/// crate only the `plain!` macro implements it, checking that at compile
/// time.
pub unsafe trait FromBytes: Copy + Sized + 'static {
    /// Reads a value from the first `size_of::<Self>()` bytes; the rest is
    /// returned. Any alignment.
    fn read_from_prefix(bytes: &[u8]) -> Result<(Self, &[u8]), SizeError> {
        if bytes.len() < size_of::<Self>() {
            return Err(SizeError);
        }
        let (head, rest) = bytes.split_at(size_of::<Self>());
        // SAFETY: `head` is `size_of::<Self>()` initialised bytes, valid for
        // reads (a borrowed slice); `read_unaligned` allows any alignment;
        // every bit pattern is a valid `Self` (this trait's contract).
        let value = unsafe { head.as_ptr().cast::<Self>().read_unaligned() };
        Ok((value, rest))
    }

    /// Reads a value from exactly `size_of::<Self>()` bytes.
    fn read_from_bytes(bytes: &[u8]) -> Result<Self, SizeError> {
        match Self::read_from_prefix(bytes)? {
            (value, []) => Ok(value),
            _ => Err(SizeError),
        }
    }

    /// The all-zero value.
    fn new_zeroed() -> Self {
        // SAFETY: all-zero bytes are one bit pattern, and every bit pattern
        // is a valid `Self` (this trait's contract).
        unsafe { core::mem::zeroed() }
    }
}

/// A [`FromBytes`] type with no padding: all of its bytes are initialised.
///
/// # Safety
///
/// The type must also have no padding: every field is `IntoBytes` and their
/// sizes add up to the type's. Within this crate only the `plain!` macro
/// implements it, checking that at compile time.
pub unsafe trait IntoBytes: FromBytes {
    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `self` is valid for reads of `size_of::<Self>()` bytes for
        // the borrow, and all of them are initialised (no padding: this
        // trait's contract); `u8` has alignment 1.
        unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>())
        }
    }

    /// Writes the value's bytes over the first `size_of::<Self>()` bytes.
    fn write_to_prefix(&self, bytes: &mut [u8]) -> Result<(), SizeError> {
        bytes
            .get_mut(..size_of::<Self>())
            .ok_or(SizeError)?
            .copy_from_slice(self.as_bytes());
        Ok(())
    }

    /// The value's bytes, writable: any bytes written leave a valid value.
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: `self` is valid for reads and writes of `size_of::<Self>()`
        // bytes and exclusively borrowed; all of them are initialised (no
        // padding) and any bytes written make a valid `Self` (`FromBytes`).
        unsafe {
            core::slice::from_raw_parts_mut((self as *mut Self).cast::<u8>(), size_of::<Self>())
        }
    }
}

/// The bytes of a slice of plain values (the crate's `u64` buffers that
/// hold a struct and its capability chain with the right alignment).
pub trait SliceBytes {
    /// The slice's bytes.
    fn as_bytes(&self) -> &[u8];
    /// The slice's bytes, writable.
    fn as_mut_bytes(&mut self) -> &mut [u8];
}

impl<T: IntoBytes> SliceBytes for [T] {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the slice is valid for reads of `size_of_val(self)` bytes
        // for the borrow, all initialised (`T` has no padding, and slice
        // elements are laid out with no gap between them).
        unsafe { core::slice::from_raw_parts(self.as_ptr().cast::<u8>(), size_of_val(self)) }
    }

    fn as_mut_bytes(&mut self) -> &mut [u8] {
        let len = size_of_val(self);
        // SAFETY: as above, exclusively borrowed, and any bytes written make
        // valid `T`s (`FromBytes`).
        unsafe { core::slice::from_raw_parts_mut(self.as_mut_ptr().cast::<u8>(), len) }
    }
}

macro_rules! primitive {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive integer has no padding and every bit pattern
        // of its size is a valid value.
        unsafe impl FromBytes for $t {}
        // SAFETY: as above.
        unsafe impl IntoBytes for $t {}
    )*};
}
primitive!(u8, u16, u32, u64, i8, i16, i32, i64, usize, isize);

// SAFETY: an array is its elements with no gap between them; each element
// accepts every bit pattern.
unsafe impl<T: FromBytes, const N: usize> FromBytes for [T; N] {}
// SAFETY: as above, and the elements have no padding.
unsafe impl<T: IntoBytes, const N: usize> IntoBytes for [T; N] {}

/// Type-checks that a field is `FromBytes` (used by `plain!`).
#[doc(hidden)]
pub const fn from_bytes_field<T: FromBytes>(_: &T) {}

/// Type-checks that a field is `IntoBytes` (used by `plain!`).
#[doc(hidden)]
pub const fn into_bytes_field<T: IntoBytes>(_: &T) {}

/// Implements [`FromBytes`] (`readable`, and for unions `union`) or
/// [`FromBytes`] + [`IntoBytes`] (`bytes`) for a `#[repr(C)]` type, listing
/// its fields with their types, and proves the conditions at compile time.
/// A wrong field type, a field that is not plain, or (for `bytes`) padding
/// anywhere fails the build.
macro_rules! plain {
    (bytes $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $crate::sys::plain::plain!(readable $name { $($field: $ty),* });
        #[allow(unsafe_code)] // the unsafe lives here, in sys, wherever it expands
        // SAFETY: every field is `IntoBytes` and the type is `#[repr(C)]`
        // (both checked below / by the generator), and the field sizes add
        // up to the type's size (asserted below): there is no padding.
        unsafe impl $crate::sys::IntoBytes for $name {}
        const _: () = {
            #[allow(dead_code)]
            const fn fields_are_bytes(v: &$name) {
                $( let f: &$ty = &v.$field; $crate::sys::plain::into_bytes_field(f); )*
            }
            assert!(
                0 $(+ ::core::mem::size_of::<$ty>())* == ::core::mem::size_of::<$name>(),
                concat!(stringify!($name), " has padding: it cannot be IntoBytes"),
            );
        };
    };
    (readable $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[allow(unsafe_code)] // the unsafe lives here, in sys, wherever it expands
        // SAFETY: every field is `FromBytes` (checked below: the listed type
        // is the field's own, and it must be `FromBytes`), so every bit
        // pattern of the `#[repr(C)]` struct is a valid value.
        unsafe impl $crate::sys::FromBytes for $name {}
        const _: () = {
            #[allow(dead_code)]
            const fn fields_from_bytes(v: &$name) {
                $( let f: &$ty = &v.$field; $crate::sys::plain::from_bytes_field(f); )*
            }
        };
    };
    (union $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[allow(unsafe_code)] // the unsafe lives here, in sys, wherever it expands
        // SAFETY: every member is `FromBytes` (checked below), so every bit
        // pattern of the union's size is a valid value of each member, and
        // so of the union.
        unsafe impl $crate::sys::FromBytes for $name {}
        const _: () = {
            #[allow(dead_code)]
            const fn members_from_bytes(v: &$name) {
                $(
                    // SAFETY: never called; it only type-checks each member
                    // (taking a member's address reads nothing).
                    let f: &$ty = unsafe { &v.$field };
                    $crate::sys::plain::from_bytes_field(f);
                )*
            }
        };
    };
}
pub(crate) use plain;
