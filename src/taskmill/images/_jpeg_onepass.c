/* One decode of a JPEG feeding two outputs: the full-size image re-encoded as a JPEG of
 * another quality, and a copy reduced by an integer factor.
 *
 * libvips cannot send one decode to two consumers, so the default renditions cost it two
 * decodes (one shrunk on load, one full size for `compressed`), and entropy decoding is
 * paid in full by each. Here libjpeg decodes in raw mode, strip by strip: the Y, Cb and Cr
 * planes, before colour conversion and chroma upsampling. Each strip goes straight to the
 * encoder (which then needs no colour conversion either) and into a box-filter reduction.
 * Only a few strips are held at a time, whatever the image size, except for an image
 * with an EXIF rotation or flip: its full-size output is kept whole at 4:2:0 (1.5 bytes a
 * pixel, half of RGB) until the decode ends, then encoded turned upright.
 *
 * Anything libjpeg so much as warns about raises ValueError, as does any layout this file
 * does not handle: the caller then takes the general path, which decides how to treat it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define BATCH 16 /* luma rows per encoder call: 2 x DCTSIZE for 4:2:0 output */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
} ErrorManager;

static void
on_error(j_common_ptr cinfo)
{
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->escape, 1);
}

static void
on_message(j_common_ptr cinfo, int level)
{
    if (level < 0) { /* a warning: damaged data, or something unusual */
        on_error(cinfo);
    }
}

typedef struct {
    /* in */
    const unsigned char *data;
    size_t size;
    int quality;
    int shrink;
    int optimize;
    int orientation; /* EXIF, 1-8: the full-size output is turned upright */
    /* out */
    unsigned char *jpeg; /* malloc'd, grown by the destination manager */
    size_t jpeg_capacity;
    size_t jpeg_size;
    unsigned char *reduced; /* RGB, reduced_width x reduced_height */
    int reduced_width;
    int reduced_height;
    char message[JMSG_LENGTH_MAX];
} Job;

/* The encoder's output, in a buffer this file owns (libjpeg's jpeg_mem_dest leaves the
 * caller a freed pointer when an error stops it after the buffer has grown). */
typedef struct {
    struct jpeg_destination_mgr pub;
    Job *job;
} Destination;

static void
init_destination(j_compress_ptr c)
{
    Destination *dest = (Destination *)c->dest;
    dest->pub.next_output_byte = dest->job->jpeg;
    dest->pub.free_in_buffer = dest->job->jpeg_capacity;
}

static boolean
grow_destination(j_compress_ptr c)
{
    Destination *dest = (Destination *)c->dest;
    Job *job = dest->job;
    size_t used = job->jpeg_capacity; /* libjpeg calls this with the buffer full */
    unsigned char *grown = realloc(job->jpeg, job->jpeg_capacity * 2);
    if (!grown) {
        ERREXIT(c, JERR_OUT_OF_MEMORY);
    }
    job->jpeg = grown;
    job->jpeg_capacity *= 2;
    dest->pub.next_output_byte = grown + used;
    dest->pub.free_in_buffer = job->jpeg_capacity - used;
    return TRUE;
}

static void
term_destination(j_compress_ptr c)
{
    Destination *dest = (Destination *)c->dest;
    dest->job->jpeg_size = dest->job->jpeg_capacity - dest->pub.free_in_buffer;
}

typedef struct {
    /* per input component: rows of one batch, and the sampling relative to luma */
    JSAMPROW rows[3][BATCH];
    unsigned char *planes[3];
    int step_x[3], step_y[3]; /* 1 or 2: luma pixels per sample */
    int shift_x[3];           /* log2(step_x): shifts, not divisions, in the pixel loops */
    int real_width[3], real_height[3];
    size_t row_width[3];
    /* 1 when the 4:2:0 luma pairs start one pixel in, (0), (1, 2), (3, 4)...: a flip across
     * an odd width (pair_x) or height (pair_y) then turns them into the upright image's
     * pairs (0, 1), (2, 3)... exactly */
    int pair_x, pair_y;
    unsigned char *previous[3]; /* the previous batch's last chroma rows (1, 2), for pair_y */
    /* output chroma (4:2:0) rows of one batch */
    JSAMPROW chroma_rows[2][BATCH / 2];
    unsigned char *chroma_planes[2];
    /* box-filter sums of one reduced row: Y, Cb, Cr interleaved */
    unsigned int *sums;
    /* with an EXIF orientation: the whole image at 4:2:0 as decoded, and the encoder's
     * strip of it turned upright */
    unsigned char *whole[3];
    int whole_width[3], whole_height[3];
    JSAMPROW upright_rows[3][BATCH];
    unsigned char *upright_planes[3];
} Buffers;

static void
free_buffers(Buffers *b)
{
    for (int i = 0; i < 3; i++) {
        free(b->planes[i]);
    }
    for (int i = 0; i < 2; i++) {
        free(b->chroma_planes[i]);
    }
    for (int i = 0; i < 3; i++) {
        free(b->whole[i]);
        free(b->upright_planes[i]);
        free(b->previous[i]);
    }
    free(b->sums);
}

static int
min_int(int a, int b)
{
    return a < b ? a : b;
}

/* Whether the decoder's layout is one this file handles: 8-bit YCbCr, luma at the highest
 * sampling, chroma at full or half resolution in each direction. */
static int
supported(j_decompress_ptr d, Buffers *b)
{
    if (d->num_components != 3 || d->jpeg_color_space != JCS_YCbCr || d->data_precision != 8) {
        return 0;
    }
    int max_h = d->max_h_samp_factor, max_v = d->max_v_samp_factor;
    if (max_h > 2 || max_v > 2 || d->comp_info[0].h_samp_factor != max_h ||
        d->comp_info[0].v_samp_factor != max_v) {
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        jpeg_component_info *c = &d->comp_info[i];
        if (max_h % c->h_samp_factor || max_v % c->v_samp_factor) {
            return 0;
        }
        b->step_x[i] = max_h / c->h_samp_factor;
        b->step_y[i] = max_v / c->v_samp_factor;
        b->shift_x[i] = b->step_x[i] - 1;
        b->real_width[i] = (int)((d->image_width + b->step_x[i] - 1) / b->step_x[i]);
        b->real_height[i] = (int)((d->image_height + b->step_y[i] - 1) / b->step_y[i]);
    }
    return 1;
}

static int
allocate(j_decompress_ptr d, Buffers *b, int out_chroma_width, int reduced_width)
{
    for (int i = 0; i < 3; i++) {
        jpeg_component_info *c = &d->comp_info[i];
        size_t width = (size_t)d->MCUs_per_row * c->h_samp_factor * DCTSIZE;
        int rows = BATCH / b->step_y[i];
        b->row_width[i] = width;
        b->planes[i] = malloc(width * rows);
        b->previous[i] = i ? malloc(width) : NULL; /* chroma only */
        if (!b->planes[i] || (i && !b->previous[i])) {
            return 0;
        }
        for (int r = 0; r < rows; r++) {
            b->rows[i][r] = b->planes[i] + r * width;
        }
    }
    for (int i = 0; i < 2; i++) {
        b->chroma_planes[i] = malloc((size_t)out_chroma_width * (BATCH / 2));
        if (!b->chroma_planes[i]) {
            return 0;
        }
        for (int r = 0; r < BATCH / 2; r++) {
            b->chroma_rows[i][r] = b->chroma_planes[i] + (size_t)r * out_chroma_width;
        }
    }
    b->sums = calloc((size_t)reduced_width * 3, sizeof(unsigned int));
    return b->sums != NULL;
}

/* Read one batch of BATCH luma rows (fewer at the bottom); returns the rows read. */
static int
read_batch(j_decompress_ptr d, Buffers *b)
{
    int per_read = d->max_v_samp_factor * DCTSIZE, read = 0;
    while (read < BATCH && d->output_scanline < d->output_height) {
        JSAMPARRAY planes[3];
        for (int i = 0; i < 3; i++) {
            planes[i] = &b->rows[i][read / b->step_y[i]];
        }
        int got = (int)jpeg_read_raw_data(d, planes, (JDIMENSION)per_read);
        if (got == 0) { /* only a suspending data source returns nothing */
            break;
        }
        read += got;
    }
    return read;
}

/* The stored chroma row of `comp` under luma row y (clamped to the image): one of this
 * batch's rows, or the previous batch's last. */
static const unsigned char *
chroma_row(Buffers *b, int comp, int y, int top)
{
    int sy = b->step_y[comp];
    int row = (y < 0 ? 0 : min_int(y, b->real_height[0] - 1)) / sy;
    return row < top / sy ? b->previous[comp] : b->rows[comp][row - top / sy];
}

/* A chroma plane of the batch at 4:2:0: each output sample averages the input samples
 * that cover its pair of luma pixels in each direction; beyond the image's edges the last
 * real sample repeats. */
static void
to_half_chroma(Buffers *b, int comp, int out, int top, int out_width)
{
    int shift = b->shift_x[comp], px = b->pair_x, py = b->pair_y;
    int inside = px ? 0 : min_int(out_width, ((b->real_width[comp] << shift) - 1) / 2);
    int last = b->real_width[comp] - 1;
    for (int r = 0; r < BATCH / 2; r++) {
        const unsigned char *a = chroma_row(b, comp, top + 2 * r - py, top);
        const unsigned char *c = chroma_row(b, comp, top + 2 * r + 1 - py, top);
        unsigned char *o = b->chroma_rows[out][r];
        int x = 0;
        if (shift) { /* already half width: average the two rows */
            for (; x < inside; x++) {
                o[x] = (unsigned char)((a[x] + c[x] + (x & 1)) >> 1);
            }
        } else {
            for (; x < inside; x++) {
                o[x] = (unsigned char)((a[2 * x] + a[2 * x + 1] + c[2 * x] + c[2 * x + 1] + 1 +
                                        (x & 1)) >> 2);
            }
        }
        for (; x < out_width; x++) { /* the right edge, or every column for pair_x */
            int x0 = min_int((2 * x - px < 0 ? 0 : 2 * x - px) >> shift, last);
            int x1 = min_int((2 * x + 1 - px) >> shift, last);
            o[x] = (unsigned char)((a[x0] + a[x1] + c[x0] + c[x1] + 1 + (x & 1)) >> 2);
        }
    }
}

/* For pair_y: keep the batch's last chroma rows, which the next batch's first pairs share. */
static void
remember_last_rows(Buffers *b, int top, int height)
{
    int last = min_int(top + BATCH, height) - 1;
    for (int comp = 1; comp < 3; comp++) {
        memcpy(b->previous[comp], chroma_row(b, comp, last, top), b->row_width[comp]);
    }
}

/* Add the pixels [x, end) of one luma row and its chroma to one reduced pixel's sums. */
static inline void
add_box(unsigned int *sums, const unsigned char *luma, const unsigned char *cb,
        const unsigned char *cr, int shift_cb, int shift_cr, int x, int end)
{
    unsigned int y = 0, u = 0, v = 0;
    for (int p = x; p < end; p++) {
        y += luma[p];
        u += cb[p >> shift_cb];
        v += cr[p >> shift_cr];
    }
    sums[0] += y;
    sums[1] += u;
    sums[2] += v;
}

/* Add one luma row and its chroma to the reduced row's sums. Inlined once per shrink
 * factor and chroma step, so the inner loop is constant, unrolled and shift-free. */
static inline void
add_row_k(unsigned int *sums, const unsigned char *luma, const unsigned char *cb,
          const unsigned char *cr, int shift, int width, int k)
{
    int full = width / k * k, out = 0;
    for (int x = 0; x < full; x += k, out += 3) {
        add_box(&sums[out], luma, cb, cr, shift, shift, x, x + k);
    }
    if (full < width) {
        add_box(&sums[out], luma, cb, cr, shift, shift, full, width);
    }
}

#define ADD_ROW_CASE(K, SHIFT)                                   \
    case K * 2 + SHIFT:                                          \
        add_row_k(sums, luma, cb, cr, SHIFT, width, K);          \
        return

static void
add_row(unsigned int *sums, const unsigned char *luma, const unsigned char *cb,
        const unsigned char *cr, int shift_cb, int shift_cr, int width, int k)
{
    if (shift_cb == shift_cr) {
        switch (k * 2 + shift_cb) {
            ADD_ROW_CASE(2, 0);
            ADD_ROW_CASE(2, 1);
            ADD_ROW_CASE(4, 0);
            ADD_ROW_CASE(4, 1);
            ADD_ROW_CASE(8, 0);
            ADD_ROW_CASE(8, 1);
        default:
            break;
        }
    }
    int out = 0;
    for (int x = 0; x < width; x += k, out += 3) {
        add_box(&sums[out], luma, cb, cr, shift_cb, shift_cr, x, min_int(x + k, width));
    }
}

/* JFIF YCbCr -> RGB in 16-bit fixed point, as libjpeg does. */
#define FIX(x) ((int)((x) * 65536 + 0.5))

static void
to_rgb(unsigned char *o, int y, int u, int v)
{
    int r = y + ((FIX(1.402) * v + 32768) >> 16);
    int g = y + ((-FIX(0.344136) * u - FIX(0.714136) * v + 32768) >> 16);
    int b = y + ((FIX(1.772) * u + 32768) >> 16);
    o[0] = (unsigned char)(r < 0 ? 0 : r > 255 ? 255 : r);
    o[1] = (unsigned char)(g < 0 ? 0 : g > 255 ? 255 : g);
    o[2] = (unsigned char)(b < 0 ? 0 : b > 255 ? 255 : b);
}

/* Add the batch's rows to the reduced image, emitting every completed reduced row. */
static void
reduce_batch(Buffers *b, Job *job, int top, int rows, int width, int height)
{
    int k = job->shrink, rw = job->reduced_width;
    for (int r = 0; r < rows && top + r < height; r++) {
        int y = top + r;
        add_row(b->sums, b->rows[0][r], b->rows[1][r / b->step_y[1]],
                b->rows[2][r / b->step_y[2]], b->shift_x[1], b->shift_x[2], width, k);
        if ((y + 1) % k != 0 && y + 1 != height) {
            continue;
        }
        int box_h = y % k + 1;
        unsigned char *o = job->reduced + (size_t)(y / k) * rw * 3;
        for (int x = 0; x < rw; x++) {
            unsigned int n = (unsigned int)(min_int(k, width - x * k) * box_h), half = n / 2;
            const unsigned int *s = &b->sums[x * 3];
            to_rgb(&o[3 * x], (int)((s[0] + half) / n), (int)((s[1] + half) / n) - 128,
                   (int)((s[2] + half) / n) - 128);
        }
        memset(b->sums, 0, (size_t)rw * 3 * sizeof(unsigned int));
    }
}

static void
setup_encoder(j_compress_ptr c, JDIMENSION width, JDIMENSION height, Job *job)
{
    c->image_width = width;
    c->image_height = height;
    c->input_components = 3;
    c->in_color_space = JCS_YCbCr;
    jpeg_set_defaults(c);
    jpeg_set_quality(c, job->quality, TRUE);
    c->comp_info[0].h_samp_factor = 2;
    c->comp_info[0].v_samp_factor = 2;
    for (int i = 1; i < 3; i++) {
        c->comp_info[i].h_samp_factor = 1;
        c->comp_info[i].v_samp_factor = 1;
    }
    c->raw_data_in = TRUE;
    c->dct_method = JDCT_ISLOW;
    c->optimize_coding = job->optimize ? TRUE : FALSE;
}

/* Whether the orientation swaps width and height (5-8 turn the image a quarter). */
static int
transposed(int orientation)
{
    return orientation >= 5;
}

/* Room for the whole image at 4:2:0, and for one upright strip of the encoder's input. */
static int
allocate_whole(Buffers *b, int width, int height, int orientation)
{
    int up_width = transposed(orientation) ? height : width;
    for (int i = 0; i < 3; i++) {
        int w = i ? (width + 1) / 2 : width, h = i ? (height + 1) / 2 : height;
        int up_w = i ? (up_width + 1) / 2 : up_width;
        size_t padded = (size_t)(up_w + DCTSIZE - 1) / DCTSIZE * DCTSIZE;
        int rows = i ? BATCH / 2 : BATCH;
        b->whole_width[i] = w;
        b->whole_height[i] = h;
        b->whole[i] = malloc((size_t)w * h);
        b->upright_planes[i] = malloc(padded * rows);
        if (!b->whole[i] || !b->upright_planes[i]) {
            return 0;
        }
        for (int r = 0; r < rows; r++) {
            b->upright_rows[i][r] = b->upright_planes[i] + r * padded;
        }
    }
    return 1;
}

/* Keep the batch's rows (luma, and chroma already at 4:2:0) in the whole planes. */
static void
keep_batch(Buffers *b, JSAMPROW luma[], int top)
{
    JSAMPROW *rows[3] = {luma, b->chroma_rows[0], b->chroma_rows[1]};
    for (int i = 0; i < 3; i++) {
        int first = i ? top / 2 : top, count = i ? BATCH / 2 : BATCH;
        count = min_int(count, b->whole_height[i] - first);
        for (int r = 0; r < count; r++) {
            memcpy(b->whole[i] + (size_t)(first + r) * b->whole_width[i], rows[i][r],
                   (size_t)b->whole_width[i]);
        }
    }
}

/* Where each upright pixel (x, y) of a plane is stored: at (u, v) = (x, y), or (y, x) for
 * the orientations that turn a quarter, each axis counted from the far side if flipped. */
typedef struct {
    int swap, flip_x, flip_y;
} Turn;

static Turn
turn_of(int orientation)
{
    Turn t = {transposed(orientation), 0, 0};
    t.flip_x = orientation == 2 || orientation == 3 || orientation == 7 || orientation == 8;
    t.flip_y = orientation == 3 || orientation == 4 || orientation == 6 || orientation == 7;
    return t;
}

/* Rows [top, top + count) of plane i turned upright, padded on the right (and past the
 * bottom) with copies of the last pixel. */
static void
upright_rows(Buffers *b, int i, int orientation, int top, int count, int padded)
{
    Turn t = turn_of(orientation);
    int w = b->whole_width[i], h = b->whole_height[i];
    int up_w = t.swap ? h : w, up_h = t.swap ? w : h;
    /* upright (x, y) is stored at origin + x * step_x + y * step_y */
    ptrdiff_t across = t.flip_x ? -1 : 1, down = t.flip_y ? -(ptrdiff_t)w : w;
    ptrdiff_t origin = (t.flip_x ? w - 1 : 0) + (t.flip_y ? (ptrdiff_t)(h - 1) * w : 0);
    ptrdiff_t step_x = t.swap ? down : across, step_y = t.swap ? across : down;
    const unsigned char *plane = b->whole[i];
    JSAMPROW *rows = b->upright_rows[i];
    ptrdiff_t offsets[BATCH];
    for (int r = 0; r < count; r++) {
        offsets[r] = origin + min_int(top + r, up_h - 1) * step_y;
    }
    if (t.swap) {
        /* The strip's rows are neighbouring stored columns: read each stored row's few
         * neighbouring bytes at once, not one stored column (a cache line a pixel) at a time,
         * and in address order (backwards is ~25 % slower for the whole encode). */
        int first = step_y < 0 ? count - 1 : 0, next = step_y < 0 ? -1 : 1;
        for (int x = 0; x < up_w; x++) {
            ptrdiff_t p = x * step_x;
            for (int k = 0, r = first; k < count; k++, r += next) {
                rows[r][x] = plane[p + offsets[r]];
            }
        }
    } else {
        for (int r = 0; r < count; r++) {
            ptrdiff_t p = offsets[r];
            for (int x = 0; x < up_w; x++, p += step_x) {
                rows[r][x] = plane[p];
            }
        }
    }
    for (int r = 0; r < count; r++) {
        memset(rows[r] + up_w, rows[r][up_w - 1], (size_t)(padded - up_w));
    }
}

/* Encode the whole planes turned upright, a strip at a time. */
static void
encode_upright(j_compress_ptr c, Buffers *b, int orientation)
{
    int luma_padded = (int)(c->comp_info[0].width_in_blocks * DCTSIZE);
    int chroma_padded = (int)(c->comp_info[1].width_in_blocks * DCTSIZE);
    for (int top = 0; top < (int)c->image_height; top += BATCH) {
        upright_rows(b, 0, orientation, top, BATCH, luma_padded);
        upright_rows(b, 1, orientation, top / 2, BATCH / 2, chroma_padded);
        upright_rows(b, 2, orientation, top / 2, BATCH / 2, chroma_padded);
        JSAMPARRAY planes[3] = {b->upright_rows[0], b->upright_rows[1], b->upright_rows[2]};
        jpeg_write_raw_data(c, planes, BATCH);
    }
}

/* The work, without the GIL. Returns 0, or -1 with job->message set. */
static int
run(Job *job)
{
    struct jpeg_decompress_struct d;
    struct jpeg_compress_struct c;
    ErrorManager err;
    Destination dest = {{0}, job};
    Buffers b;
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    memset(&d, 0, sizeof d); /* destroying a zeroed, never created object does nothing */
    d.err = c.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.emit_message = on_message;
    if (setjmp(err.escape)) {
        snprintf(job->message, sizeof job->message, "%s", err.message);
        goto fail;
    }
    jpeg_create_decompress(&d);
    jpeg_create_compress(&c);
    jpeg_mem_src(&d, job->data, (unsigned long)job->size);
    jpeg_read_header(&d, TRUE);
    if (!supported(&d, &b)) { /* before a progressive file's scans are all decoded */
        snprintf(job->message, sizeof job->message, "a JPEG layout the one-pass path skips");
        goto fail;
    }
    d.raw_data_out = TRUE;
    d.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&d);
    int width = (int)d.image_width, height = (int)d.image_height, k = job->shrink;
    int out_chroma_width = (int)((((d.image_width + 1) / 2) + DCTSIZE - 1) / DCTSIZE * DCTSIZE);
    job->reduced_width = (width + k - 1) / k;
    job->reduced_height = (height + k - 1) / k;
    job->reduced = malloc((size_t)job->reduced_width * job->reduced_height * 3);
    /* a q60 re-encode is rarely over a bit per pixel */
    job->jpeg_capacity = (size_t)width * height / 8 + 65536;
    job->jpeg = malloc(job->jpeg_capacity);
    int oriented = job->orientation != 1;
    Turn turn = turn_of(job->orientation);
    b.pair_x = turn.flip_x && width % 2;
    b.pair_y = turn.flip_y && height % 2;
    if (!job->reduced || !job->jpeg || !allocate(&d, &b, out_chroma_width, job->reduced_width) ||
        (oriented && !allocate_whole(&b, width, height, job->orientation))) {
        snprintf(job->message, sizeof job->message, "out of memory");
        goto fail;
    }
    dest.pub.init_destination = init_destination;
    dest.pub.empty_output_buffer = grow_destination;
    dest.pub.term_destination = term_destination;
    c.dest = &dest.pub;
    setup_encoder(&c, turn.swap ? d.image_height : d.image_width,
                  turn.swap ? d.image_width : d.image_height, job);
    jpeg_start_compress(&c, TRUE);
    for (int top = 0; top < height; top += BATCH) {
        int rows = read_batch(&d, &b);
        if (rows == 0) {
            snprintf(job->message, sizeof job->message, "the decoder returned no rows");
            goto fail;
        }
        JSAMPROW luma[BATCH];
        for (int r = 0; r < BATCH; r++) { /* rows past the bottom repeat the last one */
            luma[r] = b.rows[0][min_int(r, min_int(rows, height - top) - 1)];
        }
        to_half_chroma(&b, 1, 0, top, out_chroma_width);
        to_half_chroma(&b, 2, 1, top, out_chroma_width);
        if (b.pair_y) {
            remember_last_rows(&b, top, height);
        }
        if (oriented) {
            keep_batch(&b, luma, top);
        } else {
            JSAMPARRAY planes[3] = {luma, b.chroma_rows[0], b.chroma_rows[1]};
            jpeg_write_raw_data(&c, planes, BATCH);
        }
        reduce_batch(&b, job, top, rows, width, height);
    }
    if (oriented) {
        encode_upright(&c, &b, job->orientation);
    }
    jpeg_finish_compress(&c);
    jpeg_finish_decompress(&d);
    jpeg_destroy_compress(&c);
    jpeg_destroy_decompress(&d);
    free_buffers(&b);
    return 0;
fail:
    jpeg_destroy_compress(&c);
    jpeg_destroy_decompress(&d);
    free_buffers(&b);
    free(job->reduced);
    free(job->jpeg);
    job->reduced = NULL;
    job->jpeg = NULL;
    return -1;
}

PyDoc_STRVAR(reencode_and_reduce_doc,
"reencode_and_reduce(data, quality, shrink, optimize_coding, orientation)\n--\n\n"
"Decode the JPEG `data` once. Returns (jpeg, rgb, width, height): the full-size image\n"
"re-encoded as a baseline 4:2:0 JPEG of `quality` (no metadata), turned upright by the\n"
"EXIF `orientation` (1-8), and the image reduced by `shrink` (box filter) as packed 8-bit\n"
"RGB of width x height, as stored (the orientation not applied).\n"
"Raises ValueError for damaged data, any libjpeg warning, or a layout not handled here.");

static PyObject *
reencode_and_reduce(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer data;
    Job job;
    memset(&job, 0, sizeof job);
    if (!PyArg_ParseTuple(args, "y*iipi", &data, &job.quality, &job.shrink, &job.optimize,
                          &job.orientation)) {
        return NULL;
    }
    if (job.quality < 1 || job.quality > 100 || job.shrink < 1 || job.shrink > 64 ||
        job.orientation < 1 || job.orientation > 8) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError,
                        "quality must be 1-100, shrink 1-64 and orientation 1-8");
        return NULL;
    }
    job.data = data.buf;
    job.size = (size_t)data.len;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run(&job);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (rc != 0) {
        PyErr_SetString(PyExc_ValueError, job.message);
        return NULL;
    }
    PyObject *result = Py_BuildValue(
        "y#y#ii", job.jpeg, (Py_ssize_t)job.jpeg_size, job.reduced,
        (Py_ssize_t)job.reduced_width * job.reduced_height * 3, job.reduced_width,
        job.reduced_height);
    free(job.jpeg);
    free(job.reduced);
    return result;
}

static PyMethodDef methods[] = {
    {"reencode_and_reduce", reencode_and_reduce, METH_VARARGS, reencode_and_reduce_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg_onepass",
    "One JPEG decode feeding a full-size re-encode and a reduced copy.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__jpeg_onepass(void)
{
    return PyModule_Create(&module);
}
