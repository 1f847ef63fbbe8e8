#pragma once
// The filesystem's FUSE ops, written against fuse::request so that any transport can call them
// (libfuse_transport.cpp for /dev/fuse, the io_uring transport with its own decoder). Each op
// takes its request (and the arguments the kernel sent, already decoded), starts a coroutine on
// the request's reactor when it has to wait, and returns; the request is answered exactly once.
// Arguments are only valid during the call: ops copy what they keep.
#include <cstdint>

#include "fuse/request.hpp"

namespace valkyrie::fuse {

struct mount_options;

void op_lookup(request_ptr req, fuse_ino_t parent, const char* name);
void op_forget(request_ptr req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(request_ptr req, size_t count, const fuse_forget_data* forgets);
void op_getattr(request_ptr req, fuse_ino_t ino);
void op_setattr(request_ptr req, fuse_ino_t ino, const struct stat* attr, int to_set,
                fuse_file_info* fi);
void op_opendir(request_ptr req, fuse_ino_t ino, fuse_file_info* fi);
void op_readdir(request_ptr req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void op_readdirplus(request_ptr req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void op_releasedir(request_ptr req, fuse_ino_t ino, fuse_file_info* fi);
void op_open(request_ptr req, fuse_ino_t ino, fuse_file_info* fi);
void op_read(request_ptr req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void op_write(request_ptr req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi);
void op_release(request_ptr req, fuse_ino_t ino, fuse_file_info* fi);
void op_flush(request_ptr req, fuse_ino_t ino, fuse_file_info* fi);
void op_statfs(request_ptr req, fuse_ino_t ino);
void op_access(request_ptr req, fuse_ino_t ino, int mask);
void op_getxattr(request_ptr req, fuse_ino_t ino, const char* name, size_t size);
void op_listxattr(request_ptr req, fuse_ino_t ino, size_t size);
// Every other write-type op: EROFS.
void refuse_write(request_ptr req);

}  // namespace valkyrie::fuse
