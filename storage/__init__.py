"""Object stores behind one small interface, and the evidence vault built on them."""
