/*
 * The per-frame path of SFrame (RFC 9605) for every cipher suite (§4.5), below the interpreter:
 * one call seals a frame (nonce, AAD, header || ciphertext || tag) or parses a frame's header
 * (§4.3), finds its key, checks the replay window (§9.3), opens it and moves the window.
 *
 * AES-GCM, AES-CTR and HMAC are OpenSSL's (libcrypto's EVP interface, the library
 * pyca/cryptography is built on): nothing here is a primitive; the AES-CTR + HMAC composition
 * of §4.5.1 is protocol logic, as in the Python path. The pure-Python path in doorless/sframe.py is the reference and
 * handles everything unusual: this module answers None (not an error) for any frame that is
 * not plainly valid — unknown KID, header not minimal or cut short, CTR replayed or too old, tag
 * that does not verify — and the Python path then raises the precise typed error. Tests compare
 * the two paths on every input they generate (tests/sframe/test_sframe_native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define NONCE_LEN 12   /* Nn of every suite (§4.5) */
#define GCM_TAG_LEN 16 /* Nt of the AES-GCM suites */
#define MAX_MAC 64     /* the longest HMAC output (SHA-512) */

static PyObject *InvalidTag;        /* cryptography.exceptions.InvalidTag, as pyca raises it */
static PyTypeObject *DecryptedType; /* doorless.sframe.Decrypted, set by set_result_type() */

typedef struct {
    PyObject_HEAD
    int gcm;              /* 1: AES-GCM; 0: AES-CTR + HMAC (§4.5.1) */
    Py_ssize_t tag_len;   /* Nt */
    EVP_CIPHER_CTX *enc;  /* AES-GCM encryption, or AES-CTR (either direction) */
    EVP_CIPHER_CTX *dec;  /* AES-GCM decryption */
    EVP_MAC_CTX *mac;     /* HMAC keyed with auth_key (AES-CTR suites) */
    unsigned char salt[NONCE_LEN];
    uint64_t highest; /* highest CTR accepted, when has_highest */
    int has_highest;
    PyObject *seen; /* bytearray ring: seen[ctr % window] (window = its length, 0 = no checks) */
    PyObject *salt_int; /* the salt as an int, for the reference path */
} FrameKey;

static PyTypeObject FrameKeyType;

/* A read-only view of a bytes-like argument: bytes directly, anything else through its buffer. */
typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    Py_buffer view;
    int has_view;
} Bytes;

static int
bytes_get(PyObject *o, Bytes *b)
{
    if (PyBytes_CheckExact(o)) {
        b->buf = (const unsigned char *)PyBytes_AS_STRING(o);
        b->len = PyBytes_GET_SIZE(o);
        b->has_view = 0;
        return 0;
    }
    if (PyObject_GetBuffer(o, &b->view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    b->buf = (const unsigned char *)b->view.buf;
    b->len = b->view.len;
    b->has_view = 1;
    return 0;
}

static void
bytes_release(Bytes *b)
{
    if (b->has_view) {
        PyBuffer_Release(&b->view);
        b->has_view = 0;
    }
}

/* §4.4.3: nonce = sframe_salt XOR encode_big_endian(CTR, Nn). */
static void
make_nonce(const FrameKey *k, uint64_t ctr, unsigned char nonce[NONCE_LEN])
{
    memcpy(nonce, k->salt, NONCE_LEN);
    for (int i = 0; i < 8; i++) {
        nonce[NONCE_LEN - 1 - i] ^= (unsigned char)(ctr >> (8 * i));
    }
}

static PyObject *
openssl_failed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL operation failed");
    return NULL;
}

static int
too_long(Py_ssize_t n)
{
    if (n > INT_MAX - MAX_MAC) {
        PyErr_SetString(PyExc_OverflowError, "data too long for one SFrame AEAD call");
        return 1;
    }
    return 0;
}

static void
put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) {
        p[i] = (unsigned char)v;
    }
}

/* §4.5.1 compute_tag: HMAC(auth_key, len(aad) || len(ct) || Nt || nonce || aad || ct)[..Nt],
   each length 8 bytes big-endian, aad = aad1 || aad2. */
static int
ctr_tag(FrameKey *k, const unsigned char nonce[NONCE_LEN], const unsigned char *aad1,
        Py_ssize_t aad1_len, const unsigned char *aad2, Py_ssize_t aad2_len,
        const unsigned char *ct, Py_ssize_t ct_len, unsigned char tag[MAX_MAC])
{
    unsigned char lengths[24];
    put_u64(lengths, (uint64_t)(aad1_len + aad2_len));
    put_u64(lengths + 8, (uint64_t)ct_len);
    put_u64(lengths + 16, (uint64_t)k->tag_len);
    size_t out_len = 0;
    /* A NULL key re-initialises the HMAC with the key it was set up with. */
    return EVP_MAC_init(k->mac, NULL, 0, NULL) == 1 &&
           EVP_MAC_update(k->mac, lengths, sizeof lengths) == 1 &&
           EVP_MAC_update(k->mac, nonce, NONCE_LEN) == 1 &&
           EVP_MAC_update(k->mac, aad1, (size_t)aad1_len) == 1 &&
           EVP_MAC_update(k->mac, aad2, (size_t)aad2_len) == 1 &&
           EVP_MAC_update(k->mac, ct, (size_t)ct_len) == 1 &&
           EVP_MAC_final(k->mac, tag, &out_len, MAX_MAC) == 1 &&
           out_len >= (size_t)k->tag_len;
}

/* AES-CTR of §4.5.1 with initial_counter = nonce || 0x00000000 (AES-CTR is its own inverse). */
static int
ctr_crypt(FrameKey *k, const unsigned char nonce[NONCE_LEN], const unsigned char *in,
          Py_ssize_t len, unsigned char *out)
{
    unsigned char iv[16] = {0};
    memcpy(iv, nonce, NONCE_LEN);
    int n = 0, fin = 0;
    return EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, iv) == 1 &&
           (len == 0 || EVP_EncryptUpdate(k->enc, out, &n, in, (int)len) == 1) &&
           EVP_EncryptFinal_ex(k->enc, out + n, &fin) == 1 && n + fin == len;
}

/* AEAD.Encrypt (§4.5) with AAD = aad1 || aad2; the output is prefix || ciphertext || tag. */
static PyObject *
seal(FrameKey *k, const unsigned char nonce[NONCE_LEN], const unsigned char *prefix,
     Py_ssize_t prefix_len, const unsigned char *aad1, Py_ssize_t aad1_len,
     const unsigned char *aad2, Py_ssize_t aad2_len, const unsigned char *pt, Py_ssize_t pt_len)
{
    if (too_long(pt_len) || too_long(aad1_len) || too_long(aad2_len) ||
        too_long(prefix_len + pt_len)) {
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, prefix_len + pt_len + k->tag_len);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    if (prefix_len) {
        memcpy(o, prefix, (size_t)prefix_len);
        o += prefix_len;
    }
    int ok;
    if (k->gcm) {
        int len = 0, fin = 0;
        ok = EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, nonce) == 1 &&
             (aad1_len == 0 || EVP_EncryptUpdate(k->enc, NULL, &len, aad1, (int)aad1_len) == 1) &&
             (aad2_len == 0 || EVP_EncryptUpdate(k->enc, NULL, &len, aad2, (int)aad2_len) == 1);
        len = 0;
        ok = ok && (pt_len == 0 || EVP_EncryptUpdate(k->enc, o, &len, pt, (int)pt_len) == 1) &&
             EVP_EncryptFinal_ex(k->enc, o + len, &fin) == 1 && len + fin == pt_len &&
             EVP_CIPHER_CTX_ctrl(k->enc, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, o + pt_len) == 1;
    } else {
        /* §4.5.1: encrypt, then MAC the ciphertext. */
        unsigned char tag[MAX_MAC];
        ok = ctr_crypt(k, nonce, pt, pt_len, o) &&
             ctr_tag(k, nonce, aad1, aad1_len, aad2, aad2_len, o, pt_len, tag);
        if (ok) {
            memcpy(o + pt_len, tag, (size_t)k->tag_len);
        }
    }
    if (!ok) {
        Py_DECREF(out);
        return openssl_failed();
    }
    return out;
}

/* AEAD.Decrypt (§4.5) with AAD = aad1 || aad2. NULL with no exception set: the tag did not
   verify. */
static PyObject *
open_(FrameKey *k, const unsigned char nonce[NONCE_LEN], const unsigned char *aad1,
      Py_ssize_t aad1_len, const unsigned char *aad2, Py_ssize_t aad2_len,
      const unsigned char *ct, Py_ssize_t ct_len)
{
    if (ct_len < k->tag_len) {
        return NULL;
    }
    if (too_long(ct_len) || too_long(aad1_len) || too_long(aad2_len)) {
        return NULL;
    }
    Py_ssize_t pt_len = ct_len - k->tag_len;
    if (!k->gcm) {
        /* §4.5.1: the tag is checked (in constant time) before anything is decrypted. */
        unsigned char tag[MAX_MAC];
        if (!ctr_tag(k, nonce, aad1, aad1_len, aad2, aad2_len, ct, pt_len, tag)) {
            return openssl_failed();
        }
        if (CRYPTO_memcmp(tag, ct + pt_len, (size_t)k->tag_len) != 0) {
            return NULL;
        }
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, pt_len);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    if (!k->gcm) {
        if (!ctr_crypt(k, nonce, ct, pt_len, o)) {
            Py_DECREF(out);
            return openssl_failed();
        }
        return out;
    }
    unsigned char tag[GCM_TAG_LEN];
    memcpy(tag, ct + pt_len, GCM_TAG_LEN);
    int len = 0, fin = 0;
    if (EVP_DecryptInit_ex(k->dec, NULL, NULL, NULL, nonce) != 1 ||
        (aad1_len && EVP_DecryptUpdate(k->dec, NULL, &len, aad1, (int)aad1_len) != 1) ||
        (aad2_len && EVP_DecryptUpdate(k->dec, NULL, &len, aad2, (int)aad2_len) != 1)) {
        Py_DECREF(out);
        return openssl_failed();
    }
    len = 0;
    if ((pt_len && EVP_DecryptUpdate(k->dec, o, &len, ct, (int)pt_len) != 1) ||
        EVP_CIPHER_CTX_ctrl(k->dec, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, tag) != 1) {
        Py_DECREF(out);
        return openssl_failed();
    }
    if (EVP_DecryptFinal_ex(k->dec, o + len, &fin) <= 0) {
        /* Unauthenticated plaintext never leaves, not even in freed memory. */
        OPENSSL_cleanse(o, (size_t)pt_len);
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* --- FrameKey ----------------------------------------------------------------------------- */

/* The 96-bit salt as a Python int: high 32 bits << 64 | low 64 bits. */
static PyObject *
salt_as_int(const unsigned char salt[NONCE_LEN])
{
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 4; i++) {
        hi = hi << 8 | salt[i];
    }
    for (int i = 4; i < NONCE_LEN; i++) {
        lo = lo << 8 | salt[i];
    }
    PyObject *h = PyLong_FromUnsignedLongLong(hi), *l = PyLong_FromUnsignedLongLong(lo);
    PyObject *shift = PyLong_FromLong(64);
    PyObject *shifted = h && shift ? PyNumber_Lshift(h, shift) : NULL;
    PyObject *value = shifted && l ? PyNumber_Or(shifted, l) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    return value;
}

/* Set up the suite's contexts: AES-GCM with the whole key (enc_key_len 0), or §4.5.1's
   derive_subkeys: AES-CTR with key[..Nka], HMAC with key[Nka..]. 0 and an exception on error. */
static int
set_up(FrameKey *self, const unsigned char *key, Py_ssize_t key_len, Py_ssize_t enc_key_len,
       const char *hash)
{
    if (enc_key_len == 0) {
        const EVP_CIPHER *cipher = key_len == 16 ? EVP_aes_128_gcm()
                                   : key_len == 32 ? EVP_aes_256_gcm()
                                                   : NULL;
        if (cipher == NULL || self->tag_len != GCM_TAG_LEN) {
            PyErr_SetString(PyExc_ValueError,
                            "AES-GCM key must be 16 or 32 bytes, with a 16-byte tag");
            return 0;
        }
        self->gcm = 1;
        self->enc = EVP_CIPHER_CTX_new();
        self->dec = EVP_CIPHER_CTX_new();
        if (self->enc == NULL || self->dec == NULL ||
            EVP_EncryptInit_ex(self->enc, cipher, NULL, key, NULL) != 1 ||
            EVP_DecryptInit_ex(self->dec, cipher, NULL, key, NULL) != 1) {
            openssl_failed();
            return 0;
        }
        return 1;
    }
    const EVP_CIPHER *cipher = enc_key_len == 16 ? EVP_aes_128_ctr()
                               : enc_key_len == 32 ? EVP_aes_256_ctr()
                                                   : NULL;
    Py_ssize_t digest_len = strcmp(hash, "sha256") == 0   ? 32
                            : strcmp(hash, "sha512") == 0 ? 64
                                                          : 0;
    if (cipher == NULL || digest_len == 0 || key_len <= enc_key_len || self->tag_len < 1 ||
        self->tag_len > digest_len) {
        PyErr_SetString(PyExc_ValueError,
                        "AES-CTR + HMAC: AES key of 16 or 32 bytes, an HMAC key after it, "
                        "sha256 or sha512, a tag no longer than the hash");
        return 0;
    }
    self->enc = EVP_CIPHER_CTX_new();
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    self->mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    EVP_MAC_free(hmac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)hash, 0),
        OSSL_PARAM_construct_end(),
    };
    if (self->enc == NULL || self->mac == NULL ||
        EVP_EncryptInit_ex(self->enc, cipher, NULL, key, NULL) != 1 ||
        EVP_MAC_init(self->mac, key + enc_key_len, (size_t)(key_len - enc_key_len), params) != 1) {
        openssl_failed();
        return 0;
    }
    return 1;
}

/* FrameKey(key, salt, window, enc_key_len=0, hash="sha256", tag_len=16): one KID's key of
   any suite (enc_key_len 0: AES-GCM; else AES-CTR + HMAC), salt and replay window. Set up in
   tp_new, so no half-built key object exists. */
static PyObject *
FrameKey_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key", "salt", "window", "enc_key_len", "hash", "tag_len", NULL};
    Py_buffer key, salt;
    Py_ssize_t window, enc_key_len = 0, tag_len = GCM_TAG_LEN;
    const char *hash = "sha256";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*n|nsn", kwlist, &key, &salt, &window,
                                     &enc_key_len, &hash, &tag_len)) {
        return NULL;
    }
    FrameKey *self = NULL;
    if (salt.len != NONCE_LEN) {
        PyErr_SetString(PyExc_ValueError, "SFrame salt must be 12 bytes");
    } else if (window < 0) {
        PyErr_SetString(PyExc_ValueError, "replay window must not be negative");
    } else if ((self = (FrameKey *)type->tp_alloc(type, 0)) != NULL) {
        memcpy(self->salt, salt.buf, NONCE_LEN);
        self->tag_len = tag_len;
        self->seen = PyByteArray_FromStringAndSize(NULL, window);
        if (self->seen != NULL) {
            memset(PyByteArray_AS_STRING(self->seen), 0, (size_t)window);
            self->salt_int = salt_as_int(self->salt);
        }
        if (self->salt_int != NULL) {
            set_up(self, key.buf, key.len, enc_key_len, hash);
        }
        if (PyErr_Occurred()) {
            Py_CLEAR(self);
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&salt);
    return (PyObject *)self;
}

static void
FrameKey_dealloc(FrameKey *self)
{
    /* EVP_CIPHER_CTX_free and EVP_MAC_CTX_free cleanse the keys they hold. */
    EVP_CIPHER_CTX_free(self->enc);
    EVP_CIPHER_CTX_free(self->dec);
    EVP_MAC_CTX_free(self->mac);
    OPENSSL_cleanse(self->salt, NONCE_LEN);
    Py_XDECREF(self->seen);
    Py_XDECREF(self->salt_int);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Views of n bytes-like arguments; on failure none is held. */
static int
bytes_get_all(PyObject *const *args, Bytes *views, int n)
{
    for (int i = 0; i < n; i++) {
        if (bytes_get(args[i], &views[i]) < 0) {
            while (i--) {
                bytes_release(&views[i]);
            }
            return -1;
        }
    }
    return 0;
}

static void
bytes_release_all(Bytes *views, int n)
{
    for (int i = 0; i < n; i++) {
        bytes_release(&views[i]);
    }
}

/* The arguments (nonce, data, aad) of the AEAD methods, as pyca's AEADs take them. */
static int
aead_args(const char *name, PyObject *const *args, Py_ssize_t nargs, Bytes views[3])
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s(nonce, data, aad) takes 3 arguments", name);
        return -1;
    }
    if (bytes_get_all(args, views, 3) < 0) {
        return -1;
    }
    if (views[0].len != NONCE_LEN) {
        bytes_release_all(views, 3);
        PyErr_SetString(PyExc_ValueError, "SFrame nonce must be 12 bytes");
        return -1;
    }
    return 0;
}

/* seal(nonce, data, aad) -> ciphertext || tag. */
static PyObject *
FrameKey_seal(FrameKey *self, PyObject *const *args, Py_ssize_t nargs)
{
    Bytes v[3];
    if (aead_args("seal", args, nargs, v) < 0) {
        return NULL;
    }
    PyObject *out = seal(self, v[0].buf, NULL, 0, v[2].buf, v[2].len, NULL, 0, v[1].buf, v[1].len);
    bytes_release_all(v, 3);
    return out;
}

/* open(nonce, data, aad) -> plaintext, or InvalidTag. */
static PyObject *
FrameKey_open(FrameKey *self, PyObject *const *args, Py_ssize_t nargs)
{
    Bytes v[3];
    if (aead_args("open", args, nargs, v) < 0) {
        return NULL;
    }
    PyObject *out = open_(self, v[0].buf, v[2].buf, v[2].len, NULL, 0, v[1].buf, v[1].len);
    bytes_release_all(v, 3);
    if (out == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(InvalidTag);
    }
    return out;
}

/* seal_frame(header, ctr, plaintext, metadata) -> header || ciphertext || tag (§4.4.3), the
   nonce from the salt and CTR, the AAD header || metadata. The caller owns the CTR's
   uniqueness (SFrameSender's reservation). */
static PyObject *
FrameKey_seal_frame(FrameKey *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "seal_frame(header, ctr, plaintext, metadata) takes 4 arguments");
        return NULL;
    }
    uint64_t ctr = PyLong_AsUnsignedLongLong(args[1]);
    if (ctr == (uint64_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *const buffers[3] = {args[0], args[2], args[3]};
    Bytes v[3]; /* header, plaintext, metadata */
    if (bytes_get_all(buffers, v, 3) < 0) {
        return NULL;
    }
    unsigned char nonce[NONCE_LEN];
    make_nonce(self, ctr, nonce);
    PyObject *out = seal(self, nonce, v[0].buf, v[0].len, v[0].buf, v[0].len, v[2].buf, v[2].len,
                         v[1].buf, v[1].len);
    bytes_release_all(v, 3);
    return out;
}

static PyObject *
FrameKey_reduce(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    /* A copy of a key would be a second holder of its counters and window. */
    PyErr_SetString(PyExc_TypeError, "an SFrame key cannot be copied or pickled");
    return NULL;
}

static PyObject *
FrameKey_get_highest(FrameKey *self, void *Py_UNUSED(closure))
{
    if (!self->has_highest) {
        return PyLong_FromLong(-1);
    }
    return PyLong_FromUnsignedLongLong(self->highest);
}

static int
FrameKey_set_highest(FrameKey *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "highest cannot be deleted");
        return -1;
    }
    long long small = PyLong_AsLongLong(value);
    if (small == -1 && !PyErr_Occurred()) {
        self->has_highest = 0;
        self->highest = 0;
        return 0;
    }
    PyErr_Clear();
    uint64_t ctr = PyLong_AsUnsignedLongLong(value);
    if (ctr == (uint64_t)-1 && PyErr_Occurred()) {
        return -1;
    }
    self->highest = ctr;
    self->has_highest = 1;
    return 0;
}

static PyObject *
FrameKey_get_seen(FrameKey *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->seen);
}

static PyObject *
FrameKey_get_salt_int(FrameKey *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->salt_int);
}

static PyMethodDef FrameKey_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))FrameKey_seal, METH_FASTCALL,
     "seal(nonce, data, aad) -> ciphertext || tag"},
    {"open", (PyCFunction)(void (*)(void))FrameKey_open, METH_FASTCALL,
     "open(nonce, data, aad) -> plaintext; raises InvalidTag"},
    {"seal_frame", (PyCFunction)(void (*)(void))FrameKey_seal_frame, METH_FASTCALL,
     "seal_frame(header, ctr, plaintext, metadata) -> header || ciphertext || tag"},
    {"__reduce__", FrameKey_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FrameKey_getset[] = {
    {"highest", (getter)FrameKey_get_highest, (setter)FrameKey_set_highest,
     "highest CTR accepted, or -1", NULL},
    {"seen", (getter)FrameKey_get_seen, NULL, "the replay window ring (bytearray)", NULL},
    {"salt_int", (getter)FrameKey_get_salt_int, NULL, "the salt as a big-endian integer", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject FrameKeyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "doorless._sframe_native.FrameKey",
    .tp_doc = "FrameKey(key, salt, window, enc_key_len=0, hash='sha256', tag_len=16): "
              "one KID's SFrame key, salt and replay window",
    .tp_basicsize = sizeof(FrameKey),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = FrameKey_new,
    .tp_dealloc = (destructor)FrameKey_dealloc,
    .tp_methods = FrameKey_methods,
    .tp_getset = FrameKey_getset,
};

/* --- the receiver's per-frame path --------------------------------------------------------- */

/* A big-endian value of n (1-8) bytes that is minimally encoded (§4.3): no leading zero byte,
   and at least 8 (0-7 live in the config byte). 0 when it is not. */
static int
read_minimal(const unsigned char *p, Py_ssize_t n, uint64_t *value)
{
    if (p[0] == 0) {
        return 0;
    }
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        v = v << 8 | p[i];
    }
    *value = v;
    return v >= 8;
}

static PyObject *
new_decrypted(uint64_t kid, uint64_t ctr, PyObject *plaintext)
{
    PyObject *result = DecryptedType->tp_alloc(DecryptedType, 3);
    if (result == NULL) {
        Py_DECREF(plaintext);
        return NULL;
    }
    PyObject *k = PyLong_FromUnsignedLongLong(kid);
    PyObject *c = k ? PyLong_FromUnsignedLongLong(ctr) : NULL;
    if (c == NULL) {
        Py_XDECREF(k);
        Py_DECREF(plaintext);
        Py_DECREF(result);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, k);
    PyTuple_SET_ITEM(result, 1, c);
    PyTuple_SET_ITEM(result, 2, plaintext);
    return result;
}

/* §9.3: after the tag verified, accept ctr: forget the CTRs skipped since the highest, mark it. */
static void
accept_ctr(FrameKey *k, uint64_t ctr)
{
    Py_ssize_t window = PyByteArray_GET_SIZE(k->seen);
    if (window == 0) {
        return;
    }
    unsigned char *ring = (unsigned char *)PyByteArray_AS_STRING(k->seen);
    uint64_t w = (uint64_t)window;
    if (!k->has_highest || ctr > k->highest) {
        uint64_t count = k->has_highest ? ctr - k->highest - 1 : ctr;
        uint64_t start = k->has_highest ? (k->highest + 1) % w : 0;
        if (count >= w) {
            memset(ring, 0, (size_t)w);
        } else if (start + count <= w) {
            memset(ring + start, 0, (size_t)count);
        } else {
            memset(ring + start, 0, (size_t)(w - start));
            memset(ring, 0, (size_t)(start + count - w));
        }
        k->highest = ctr;
        k->has_highest = 1;
    }
    ring[ctr % w] = 1;
}

/* open_frame(keys, frame, metadata) -> Decrypted | None. keys maps KID -> key object; None
   hands the frame to the reference path (see the top of this file). */
static PyObject *
open_frame(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "open_frame(keys, frame, metadata) takes 3 arguments");
        return NULL;
    }
    PyObject *keys = args[0], *frame = args[1], *metadata = args[2];
    if (DecryptedType == NULL || !PyDict_Check(keys) || !PyBytes_CheckExact(frame) ||
        !PyBytes_CheckExact(metadata)) {
        Py_RETURN_NONE;
    }
    const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(frame);
    Py_ssize_t n = PyBytes_GET_SIZE(frame);
    if (n < 1) {
        Py_RETURN_NONE;
    }
    /* §4.3: |X| K |Y| C | then KID bytes when X, CTR bytes when Y. */
    unsigned int config = f[0];
    Py_ssize_t pos = 1;
    uint64_t kid, ctr;
    if (config & 0x80) {
        Py_ssize_t len = ((config >> 4) & 0x07) + 1;
        if (n < pos + len || !read_minimal(f + pos, len, &kid)) {
            Py_RETURN_NONE;
        }
        pos += len;
    } else {
        kid = (config >> 4) & 0x07;
    }
    if (config & 0x08) {
        Py_ssize_t len = (config & 0x07) + 1;
        if (n < pos + len || !read_minimal(f + pos, len, &ctr)) {
            Py_RETURN_NONE;
        }
        pos += len;
    } else {
        ctr = config & 0x07;
    }
    PyObject *kid_obj = PyLong_FromUnsignedLongLong(kid);
    if (kid_obj == NULL) {
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(keys, kid_obj);
    Py_DECREF(kid_obj);
    if (entry == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (Py_TYPE(entry) != &FrameKeyType) {
        Py_RETURN_NONE;
    }
    FrameKey *k = (FrameKey *)Py_NewRef(entry);
    Py_ssize_t window = PyByteArray_GET_SIZE(k->seen);
    if (window && k->has_highest && ctr <= k->highest &&
        (k->highest - ctr >= (uint64_t)window ||
         ((unsigned char *)PyByteArray_AS_STRING(k->seen))[ctr % (uint64_t)window])) {
        Py_DECREF(k);
        Py_RETURN_NONE;
    }
    unsigned char nonce[NONCE_LEN];
    make_nonce(k, ctr, nonce);
    const unsigned char *meta = (const unsigned char *)PyBytes_AS_STRING(metadata);
    PyObject *plaintext =
        open_(k, nonce, f, pos, meta, PyBytes_GET_SIZE(metadata), f + pos, n - pos);
    if (plaintext == NULL) {
        Py_DECREF(k);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    accept_ctr(k, ctr);
    Py_DECREF(k);
    return new_decrypted(kid, ctr, plaintext);
}

static PyObject *
set_result_type(PyObject *Py_UNUSED(module), PyObject *type)
{
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the result type must be a tuple subclass");
        return NULL;
    }
    Py_XSETREF(DecryptedType, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"open_frame", (PyCFunction)(void (*)(void))open_frame, METH_FASTCALL,
     "open_frame(keys, frame, metadata) -> Decrypted | None"},
    {"set_result_type", set_result_type, METH_O,
     "set_result_type(Decrypted): the tuple subclass open_frame returns"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "doorless._sframe_native",
    .m_doc = "SFrame (RFC 9605) per-frame path on OpenSSL; see doorless.sframe.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__sframe_native(void)
{
    if (PyType_Ready(&FrameKeyType) < 0) {
        return NULL;
    }
    PyObject *exceptions = PyImport_ImportModule("cryptography.exceptions");
    if (exceptions == NULL) {
        return NULL;
    }
    InvalidTag = PyObject_GetAttrString(exceptions, "InvalidTag");
    Py_DECREF(exceptions);
    if (InvalidTag == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "FrameKey", (PyObject *)&FrameKeyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
