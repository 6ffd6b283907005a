/* Region decoding of baseline and progressive JPEGs with libjpeg-turbo: only the rows and the iMCU columns of a crop
 * go through the inverse DCT, upsampling and colour conversion (jpeg_skip_scanlines, jpeg_crop_scanline), at a DCT
 * scaling of 1/1, 1/2, 1/4 or 1/8, and decoding stops after the crop's last row. No Python binding of libjpeg-turbo
 * exposes these two calls (Pillow, OpenCV, torchvision.io decode whole images), hence this small module; without it
 * (no compiler or libjpeg headers at install time) the training pipeline decodes whole images through OpenCV.
 *
 * header(data) -> (width, height, orientation): the stored size and the EXIF orientation (1-8; 1 when there is none),
 * from the markers only. ValueError for data libjpeg cannot read, or a CMYK or YCCK image.
 *
 * decode_region(data, reduction, top, left, bottom, right) -> bytearray: the (bottom - top, right - left, 3) uint8 RGB
 * pixels of rows top..bottom-1 and columns left..right-1 of the image as decoded at 1/reduction of its size (those
 * are ceil(width / reduction) x ceil(height / reduction)). ValueError where libjpeg reports an error or a warning
 * (damaged data), or the colour space has no RGB conversion (CMYK, YCCK): the caller then decodes the file whole. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#define MARGIN 16 /* output pixels */

struct failure {
    struct jpeg_error_mgr manager;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
};

static void fail(j_common_ptr info) {
    struct failure *failure = (struct failure *)info->err;
    (*info->err->format_message)(info, failure->message);
    longjmp(failure->escape, 1);
}

static void warn(j_common_ptr info, int level) {
    /* level -1 is a warning (corrupt data that libjpeg would paper over): treated as an error */
    if (level < 0) fail(info);
}

static unsigned read16(const unsigned char *p, int little) { return little ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }

static unsigned long read32(const unsigned char *p, int little) {
    return little ? (unsigned long)read16(p, 1) | (unsigned long)read16(p + 2, 1) << 16
                  : (unsigned long)read16(p, 0) << 16 | (unsigned long)read16(p + 2, 0);
}

/* The Orientation tag (0x0112) of IFD0 in an APP1 "Exif" payload; 1 where it is absent or the payload is malformed
 * (as Pillow's exif_transpose leaves such images as stored). */
static int orientation(const unsigned char *data, unsigned long length) {
    if (length < 14 || memcmp(data, "Exif\0\0", 6) != 0) return 1;
    const unsigned char *tiff = data + 6;
    const unsigned long size = length - 6;
    const int little = tiff[0] == 'I' && tiff[1] == 'I';
    if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
    const unsigned long ifd = read32(tiff + 4, little);
    if (ifd + 2 > size) return 1;
    const unsigned entries = read16(tiff + ifd, little);
    for (unsigned k = 0; k < entries && ifd + 2 + 12 * (k + 1) <= size; k++) {
        const unsigned char *entry = tiff + ifd + 2 + 12 * k;
        if (read16(entry, little) == 0x0112 && read16(entry + 2, little) == 3) {
            const unsigned value = read16(entry + 8, little);
            return value >= 1 && value <= 8 ? (int)value : 1;
        }
    }
    return 1;
}

static PyObject *header(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    struct jpeg_decompress_struct info;
    struct failure failure;
    const char *volatile problem = NULL;
    volatile int turn = 1;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = fail;
    failure.manager.emit_message = warn;
    if (setjmp(failure.escape)) {
        problem = failure.message;
    } else {
        jpeg_create_decompress(&info);
        jpeg_mem_src(&info, (const unsigned char *)data.buf, (unsigned long)data.len);
        jpeg_save_markers(&info, JPEG_APP0 + 1, 0xFFFF);
        jpeg_read_header(&info, TRUE);
        if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK)
            problem = "CMYK or YCCK JPEG: no RGB conversion in libjpeg";
        for (jpeg_saved_marker_ptr marker = info.marker_list; marker != NULL; marker = marker->next) {
            if (marker->marker == JPEG_APP0 + 1 && marker->data_length >= 6 && memcmp(marker->data, "Exif", 4) == 0) {
                turn = orientation(marker->data, marker->data_length);
                break;
            }
        }
    }
    const unsigned long width = info.image_width, height = info.image_height;
    jpeg_destroy_decompress(&info);
    PyBuffer_Release(&data);
    if (problem != NULL) return PyErr_Format(PyExc_ValueError, "%s", problem);
    return Py_BuildValue("(kki)", width, height, (int)turn);
}

static PyObject *decode_region(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    int reduction, top, left, bottom, right;
    if (!PyArg_ParseTuple(args, "y*iiiii", &data, &reduction, &top, &left, &bottom, &right)) return NULL;
    if (!(reduction == 1 || reduction == 2 || reduction == 4 || reduction == 8) || top < 0 || left < 0 ||
        bottom <= top || right <= left) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "bad region (%d, %d, %d, %d) or reduction %d", top, left, bottom,
                            right, reduction);
    }
    const int rows = bottom - top, columns = right - left;
    PyObject *out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)rows * columns * 3); /* writable, for torch */
    if (out == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *pixels = (unsigned char *)PyByteArray_AS_STRING(out);

    struct jpeg_decompress_struct info;
    struct failure failure;
    unsigned char *volatile line = NULL;
    const char *volatile problem = NULL;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = fail;
    failure.manager.emit_message = warn;
    failure.message[0] = '\0';

    Py_BEGIN_ALLOW_THREADS
    if (setjmp(failure.escape)) {
        problem = failure.message;
    } else {
        jpeg_create_decompress(&info);
        jpeg_mem_src(&info, (const unsigned char *)data.buf, (unsigned long)data.len);
        jpeg_read_header(&info, TRUE);
        if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
            problem = "CMYK or YCCK JPEG: no RGB conversion in libjpeg";
        } else {
            info.out_color_space = JCS_EXT_RGB;
            info.scale_num = 1;
            info.scale_denom = (unsigned int)reduction;
            jpeg_start_decompress(&info);
            if ((JDIMENSION)bottom > info.output_height || (JDIMENSION)right > info.output_width) {
                problem = "region outside the image";
            } else {
                /* A margin each side: the chroma upsampling treats the decoded columns' ends as the image's, so
                 * the columns wanted stay clear of them and equal a whole decode's. */
                const JDIMENSION first = left > MARGIN ? (JDIMENSION)left - MARGIN : 0;
                const JDIMENSION last = right + MARGIN < (int)info.output_width ? (JDIMENSION)right + MARGIN
                                                                                 : info.output_width;
                JDIMENSION offset = first, width = last - first;
                jpeg_crop_scanline(&info, &offset, &width); /* widened again to iMCU boundaries */
                line = (unsigned char *)malloc((size_t)width * 3);
                if (line == NULL) {
                    problem = "out of memory";
                } else {
                    if (top > 0 && jpeg_skip_scanlines(&info, (JDIMENSION)top) != (JDIMENSION)top)
                        problem = "fewer rows than the header says";
                    const size_t skip = ((size_t)left - offset) * 3, length = (size_t)columns * 3;
                    for (int row = 0; problem == NULL && row < rows; row++) {
                        JSAMPROW rows_out[1] = {line};
                        if (jpeg_read_scanlines(&info, rows_out, 1) != 1) {
                            problem = "fewer rows than the header says";
                            break;
                        }
                        memcpy(pixels + (size_t)row * length, line + skip, length);
                    }
                }
            }
        }
    }
    jpeg_destroy_decompress(&info); /* also after a longjmp: it frees all that libjpeg allocated */
    free(line);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&data);
    if (problem != NULL) {
        Py_DECREF(out);
        return PyErr_Format(PyExc_ValueError, "%s", problem);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"header", header, METH_VARARGS,
     "header(data) -> (width, height, orientation): a JPEG's stored size and EXIF orientation, from its markers."},
    {"decode_region", decode_region, METH_VARARGS,
     "decode_region(data, reduction, top, left, bottom, right) -> bytearray: the RGB pixels of a region of a JPEG "
     "decoded at 1/reduction scale, rows top..bottom-1, columns left..right-1 (row-major, 3 bytes a pixel)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg",
    "Region decoding of JPEGs with libjpeg-turbo (jpeg_skip_scanlines, jpeg_crop_scanline).", -1, methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jpeg(void) { return PyModule_Create(&module); }
