pub use kiln_device;
