//! A real etcd + kube-apiserver on loopback.
